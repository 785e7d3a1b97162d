"""Served models for in-process tests of the HTTP layer: the model protocol and nothing else."""

from __future__ import annotations

from ezlink.engine.types import EMBEDDINGS, Capability, EmbedRequest, EmbedResult, ModelCard


class StubModel:
    """Starts, stops and always has room; subclasses add what they serve."""

    def __init__(self, name: str, capabilities: frozenset[Capability] = frozenset({EMBEDDINGS})):
        self.card = ModelCard(
            id=name, public_names=(name,), owned_by="test", created=0, capabilities=capabilities
        )

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def check_room(self) -> None:
        pass


class IdleEmbedder(StubModel):
    """An embeddings model that the requests of a test never reach."""

    def __init__(self, name: str = "idle") -> None:
        super().__init__(name)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        raise AssertionError("never reached by these requests")
