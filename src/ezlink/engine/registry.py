"""Public model names → the models that serve them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ezlink.engine.types import Capability, ModelCard, ServedModel
from ezlink.errors import InvalidRequestError, ModelNotFoundError


class ModelRegistry:
    """Every served model, reachable by its id or any alias."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self.models = list(models)
        self._by_name = {name: m for m in self.models for name in m.card.public_names}
        self.ready = False

    def get(self, name: str, capability: Capability | None = None) -> ServedModel:
        """The model serving `name`: 404 when unknown, 400 when it lacks `capability`."""
        model = self._by_name.get(name)
        if model is None:
            raise ModelNotFoundError(name)
        if capability is not None and capability not in model.card.capabilities:
            raise InvalidRequestError(
                f"The model `{name}` does not support {capability}; it serves "
                f"{', '.join(sorted(model.card.capabilities))}.",
                param="model",
                code="model_not_supported",
            )
        return model

    def names(self, capability: Capability | None = None) -> list[str]:
        """Every public name, or those of the models with `capability`."""
        return [
            name
            for name, model in self._by_name.items()
            if capability is None or capability in model.card.capabilities
        ]

    def card_of(self, name: str) -> ModelCard:
        return self.get(name).card

    async def start(self) -> None:
        await asyncio.gather(*(model.start() for model in self.models))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await asyncio.gather(*(model.stop() for model in self.models))
