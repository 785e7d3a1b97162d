"""What the API hands the engine and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

InputType = Literal["query", "document"]


@dataclass(frozen=True)
class EmbedRequest:
    """Validated inputs: texts, or token-id lists in OpenAI's cl100k_base ids."""

    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    dimensions: int | None = None
    input_type: InputType | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        assert (self.texts is None) != (self.token_ids is None)

    @property
    def count(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


@dataclass
class EmbedResult:
    """One float32 row per input, in input order, and the tokens counted."""

    vectors: npt.NDArray[np.float32]
    prompt_tokens: int


@dataclass(frozen=True)
class ModelCard:
    """What /v1/models says of a served model."""

    id: str
    public_names: tuple[str, ...]
    owned_by: str
    created: int
    dimension: int | None = None
    details: dict[str, object] = field(default_factory=dict)


class ServedModel(Protocol):
    """Anything that answers embeddings for a public model name."""

    card: ModelCard

    async def start(self) -> None: ...

    async def embed(self, request: EmbedRequest) -> EmbedResult: ...

    async def stop(self) -> None: ...
