"""The model protocol: what the API hands a served model and what it gets back.

A model says what it can do in ``card.capabilities``; the API asks the
registry for a model *with* a capability, so that no route needs to know
which class serves it. Embeddings' request and result live here; text
generation's in ``engine.generation_types``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ezlink.config import PublicModel
    from ezlink.engine.generation_types import Generation, GenerationRequest

InputType = Literal["query", "document"]
# The API families a model can answer. A family is added by adding its name here.
Capability = Literal[
    "embeddings",
    "chat",
    "completions",
    "speech",
    "transcription",
    "translation",
    "moderation",
    "images",
]
EMBEDDINGS: Capability = "embeddings"
CHAT: Capability = "chat"
COMPLETIONS: Capability = "completions"
# Audio, moderations and images: the protocols are in ``engine.media_types``.
SPEECH: Capability = "speech"
TRANSCRIPTION: Capability = "transcription"
TRANSLATION: Capability = "translation"
MODERATION: Capability = "moderation"
IMAGES: Capability = "images"


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
    capabilities: frozenset[Capability] = frozenset({EMBEDDINGS})
    dimension: int | None = None
    # The most tokens one answer may have, where the model says (text generation).
    max_output_tokens: int | None = None
    details: dict[str, object] = field(default_factory=dict)


def card_of(
    config: PublicModel,
    capabilities: frozenset[Capability],
    *,
    dimension: int | None = None,
    max_output_tokens: int | None = None,
    details: dict[str, object] | None = None,
) -> ModelCard:
    """The card of a configured model: its names and owner from the config, created now."""
    return ModelCard(
        id=config.id,
        public_names=tuple(config.public_names),
        owned_by=config.owned_by,
        created=int(time.time()),
        capabilities=capabilities,
        dimension=dimension,
        max_output_tokens=max_output_tokens,
        details=details or {},
    )


class ServedModel(Protocol):
    """Anything served under a public model name."""

    card: ModelCard

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def check_room(self) -> None:
        """Raise OverloadedError (503, Retry-After) when the model cannot take
        another request now: called before any accounting, so that a refusal
        under a burst costs next to nothing."""


class Embedder(ServedModel, Protocol):
    """A model with the `embeddings` capability."""

    async def embed(self, request: EmbedRequest) -> EmbedResult: ...


class Generator(ServedModel, Protocol):
    """A model with the `chat` and/or `completions` capability."""

    def generate(self, request: GenerationRequest) -> Generation:
        """Start a generation (lazily: the work begins when it is iterated)."""
        ...
