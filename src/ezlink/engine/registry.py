"""Public model names → the models that serve them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ezlink.engine.types import ModelCard, ServedModel
from ezlink.errors import ModelNotFoundError


class ModelRegistry:
    """Every served model, reachable by its id or any alias."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self.models = list(models)
        self._by_name = {name: m for m in self.models for name in m.card.public_names}
        self.ready = False

    def get(self, name: str) -> ServedModel:
        model = self._by_name.get(name)
        if model is None:
            raise ModelNotFoundError(name)
        return model

    def names(self) -> list[str]:
        return list(self._by_name)

    def card_of(self, name: str) -> ModelCard:
        return self.get(name).card

    async def start(self) -> None:
        await asyncio.gather(*(model.start() for model in self.models))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await asyncio.gather(*(model.stop() for model in self.models))
