"""What every settings module shares: strict models, OpenAI's limits."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)

# OpenAI's own limits for /v1/embeddings, which clients are written against.
OPENAI_MAX_INPUTS = 2048
# The Messages API version sent to `kind: anthropic` upstreams (its only stable one).
ANTHROPIC_VERSION = "2023-06-01"
OPENAI_MAX_INPUT_TOKENS = 8192
OPENAI_MAX_REQUEST_TOKENS = 300_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

