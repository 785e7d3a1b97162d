"""Settings of upstream providers and of the models routed to them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from ezlink.config.accounts import PriceConfig
from ezlink.config.base import ANTHROPIC_VERSION, OPENAI_MAX_INPUTS, PublicModel, Strict


class BreakerConfig(Strict):
    """When an upstream is taken out of rotation, and for how long."""

    # Consecutive failed calls that open the circuit.
    failure_threshold: int = Field(5, ge=1)
    # Seconds an open circuit waits before one probe call may test the upstream.
    cooldown: float = Field(10.0, gt=0)


class UpstreamConfig(Strict):
    """An OpenAI-compatible /v1/embeddings endpoint that models may be routed to."""

    name: str = Field(min_length=1)
    # The API root, e.g. https://api.openai.com/v1 (…/embeddings is appended).
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    # The NAME of the environment variable holding the key, never the key itself.
    api_key_env: str | None = None
    # Where the key goes: `Authorization` sends "Bearer KEY"; any other header
    # (Azure OpenAI's `api-key`) gets the bare key.
    api_key_header: str = "Authorization"
    # The upstream's own model name; a route may override it.
    model: str | None = None
    # `openai`: token-id inputs, `dimensions` and `user` are forwarded as they are.
    # `other`: token ids are decoded to text, `dimensions` is applied here.
    # `anthropic`: Anthropic's Messages API, chat only (upstreams/anthropic.py);
    # the key goes in `x-api-key` and `anthropic-version` is sent unless given.
    kind: Literal["openai", "other", "anthropic"] = "other"
    # Seconds one call may take, from sending to the last byte of the answer.
    timeout: float = Field(30.0, gt=0)
    # Chat/completions: seconds to connect, to a stream's first chunk, between
    # its chunks, and for the whole stream (stream: false has `timeout`).
    connect_timeout: float = Field(5.0, gt=0)
    first_token_timeout: float = Field(60.0, gt=0)
    idle_timeout: float = Field(30.0, gt=0)
    stream_timeout: float = Field(600.0, gt=0)
    # Larger requests are split into calls of at most this many inputs.
    max_inputs_per_request: int = Field(OPENAI_MAX_INPUTS, ge=1)
    # Calls in flight to this upstream at once (across all requests).
    max_concurrency: int = Field(8, ge=1)
    headers: dict[str, str] = {}
    # Query parameters on every call (Azure OpenAI's `api-version`).
    params: dict[str, str] = {}
    breaker: BreakerConfig = BreakerConfig()
    # `kind: anthropic`: max_tokens when a request sets none (Anthropic requires one).
    default_max_tokens: int = Field(4096, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _anthropic_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("kind") != "anthropic":
            return data
        headers = data.get("headers") or {}
        if isinstance(headers, dict) and not any(
            str(name).lower() == "anthropic-version" for name in headers
        ):
            headers = {"anthropic-version": ANTHROPIC_VERSION, **headers}
        return {"api_key_header": "x-api-key", **data, "headers": headers}

    @model_validator(mode="after")
    def _no_secret_in_url(self) -> UpstreamConfig:
        authority = self.base_url.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:
            raise ValueError("put credentials in `api_key_env`, not in `base_url`")
        return self


class RouteConfig(Strict):
    """One way to serve a routed model: an upstream, or a local model."""

    upstream: str | None = None
    local: str | None = None
    # Relative share of the traffic; 0 means fallback only.
    weight: float = Field(1.0, ge=0)
    # The upstream's model name for this route (default: the upstream's `model`).
    model: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RouteConfig:
        if (self.upstream is None) == (self.local is None):
            raise ValueError("give exactly one of `upstream` or `local`")
        if self.local is not None and self.model is not None:
            raise ValueError("`model` applies to upstream routes only")
        return self

    @property
    def target(self) -> str:
        return self.upstream or self.local or ""


class RetryConfig(Strict):
    """Retries of one call on the same route, before falling back to the next."""

    retries: int = Field(2, ge=0)
    # Exponential backoff with jitter: base * 2**attempt, capped, times U(0.5, 1).
    backoff_base: float = Field(0.1, ge=0)
    backoff_max: float = Field(2.0, ge=0)
    # A 429/503 Retry-After longer than this sends the call to the next route instead.
    max_retry_after: float = Field(10.0, ge=0)


class RoutedModelConfig(PublicModel):
    """A public model served by upstreams (and/or local models), with fallback."""

    kind: Literal["upstream"]
    routes: list[RouteConfig] = Field(min_length=1)
    retry: RetryConfig = RetryConfig()
    # Seconds one client request may take in all, retries and fallbacks included.
    timeout: float = Field(60.0, gt=0)
    # Shown in the model card; the upstream decides the real width.
    dimension: int | None = Field(None, ge=1)
    price: PriceConfig | None = None
