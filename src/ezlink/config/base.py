"""What every settings module shares: strict models, OpenAI's limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's own limits for /v1/embeddings, which clients are written against.
OPENAI_MAX_INPUTS = 2048
# The Messages API version sent to `kind: anthropic` upstreams (its only stable one).
ANTHROPIC_VERSION = "2023-06-01"
OPENAI_MAX_INPUT_TOKENS = 8192
OPENAI_MAX_REQUEST_TOKENS = 300_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublicModel(Strict):
    """What every served model's settings have: its public names and its owner."""

    id: str = Field(min_length=1)
    # More public names for it (each name once across all models).
    aliases: list[str] = []
    # `owned_by` in /v1/models.
    owned_by: str = "ezlink"

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]
