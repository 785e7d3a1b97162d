"""Settings of the server process: address, keys, limits of a request and of the edge."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from ezlink.config.base import (
    OPENAI_MAX_INPUT_TOKENS,
    OPENAI_MAX_INPUTS,
    OPENAI_MAX_REQUEST_TOKENS,
    Strict,
)


class RequestLimitsConfig(Strict):
    """What one request may carry (`server.limits`); a key's own limits are KeyLimits."""

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # A multipart upload (audio transcriptions, image edits) may carry more:
    # OpenAI takes audio files up to 25 MB; 26 MiB leaves room for the form.
    max_upload_bytes: int = Field(26 * 1024 * 1024, ge=1024)
    max_inputs: int = Field(OPENAI_MAX_INPUTS, ge=1)
    max_input_tokens: int = Field(OPENAI_MAX_INPUT_TOKENS, ge=1)
    max_request_tokens: int = Field(OPENAI_MAX_REQUEST_TOKENS, ge=1)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Secret for every /v1 route and the admin API; prefer EZLINK_MASTER_KEY.
    master_key: str | None = None
    limits: RequestLimitsConfig = RequestLimitsConfig()
    # On SIGTERM: seconds in-flight requests may take to finish before their
    # connections are closed (uvicorn's timeout_graceful_shutdown).
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # The HTTP edge (ops/http_protocol.py): request line + headers in bytes
    # (431 past it, 414 for the URL) and header lines; seconds a connection
    # may take to send a whole head, and a body may go without progress
    # (408); open connections per process (503 past it).
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    max_headers: int = Field(100, ge=1)
    header_timeout_seconds: float = Field(20.0, gt=0)
    body_timeout_seconds: float = Field(30.0, gt=0)
    max_connections: int = Field(2048, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json: one object per line; text: readable lines; auto: text on a terminal, else json.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Ask for the master key (as a bearer token) on GET /metrics.
    metrics_require_key: bool = False

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        # EZLINK_LOG_LEVEL=INFO is as common as =info.
        return value.lower() if isinstance(value, str) else value
