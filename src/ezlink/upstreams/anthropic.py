"""Anthropic's Messages API (``kind: anthropic``), answering OpenAI chat
completions: ``POST {base_url}/messages``, translated both ways by
``anthropic_translate``.

The call itself is ``openai_chat``'s: the same pooled connection, slots,
timeouts (``connect_timeout``, ``first_token_timeout``, ``idle_timeout``,
``stream_timeout``; ``timeout`` for an answer asked whole), server-sent event
reading, ``aclose()`` and usage fallback (ezlink counts when the stream is cut
before Anthropic's counts arrive). Only the body, the answer and the stream's
events differ, so ``AnthropicGeneration`` overrides those three.

The key goes in ``x-api-key`` and ``anthropic-version`` is sent (both
defaulted by ``UpstreamConfig`` for this kind). Failed calls are classified as
for every upstream (``http.status_error``): 400, 413 and 422 are the client's
errors, relayed with the message sanitized; 401, 403 and 404 (our key, or the
upstream model name, is wrong) fall back without a retry; 429 (with
``retry-after``), 529 ``overloaded_error`` and other 5xx are retried. An
``error`` event in the stream before the first delta is a failed call too
(retried, or the next route); after it, it ends the stream as
``UpstreamCallFailed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.errors import EzlinkError
from ezlink.upstreams.anthropic_translate import (
    StreamTranslator,
    message_deltas,
    messages_body,
    parse_usage,
)
from ezlink.upstreams.http import (
    ConnectedClient,
    UpstreamCallFailed,
    UpstreamConnection,
    error_object_fields,
    sanitize_message,
)
from ezlink.upstreams.openai_chat import OpenAIGeneration

# Anthropic's stream error types after which another try may do better.
RETRYABLE_STREAM_ERRORS = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


class AnthropicClient(ConnectedClient):
    """A ``GenerationClient`` (``upstreams.providers``) for Anthropic's Messages API."""

    def generate(
        self, request: GenerationRequest, upstream_model: str
    ) -> AnthropicGeneration | RefusedGeneration:
        """A lazy generation; a request Anthropic cannot serve fails on first iteration (400)."""
        default = self.connection.config.default_max_tokens
        try:
            body = messages_body(request, upstream_model, default)
        except EzlinkError as exc:
            return RefusedGeneration(exc)
        return AnthropicGeneration(self.connection, request, upstream_model, body)


class RefusedGeneration:
    """A generation never sent: its first iteration raises the request's error."""

    def __init__(self, error: EzlinkError) -> None:
        self.usage = Usage()
        self.served_model: str | None = None
        self.response: dict[str, Any] | None = None
        self._error = error

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._raise()

    async def _raise(self) -> AsyncIterator[Delta]:
        raise self._error
        yield  # pragma: no cover (makes this an async generator)

    async def aclose(self) -> None:
        return None


class AnthropicGeneration(OpenAIGeneration):
    """One Messages call (a ``Generation``): iterate it for OpenAI-shaped deltas."""

    def __init__(
        self,
        connection: UpstreamConnection,
        request: GenerationRequest,
        upstream_model: str,
        body: dict[str, Any],
    ) -> None:
        super().__init__(connection, request, upstream_model)
        self._body = body
        self._events = StreamTranslator()

    @property
    def _path(self) -> str:
        return "messages"

    def _request_body(self) -> dict[str, Any]:
        """The Messages request, translated when the generation was made."""
        return self._body

    def _whole_deltas(self, content: bytes) -> list[Delta]:
        try:
            data: Any = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamCallFailed(self.upstream, "the answer is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise UpstreamCallFailed(self.upstream, "the answer has no `content` list")
        model = data.get("model")
        self.served_model = model if isinstance(model, str) else None
        if isinstance(data.get("usage"), dict):
            self._reported = parse_usage(data["usage"])
        self._finished.add(0)
        return message_deltas(data)

    def _chunk_deltas(self, payload: str, event: str) -> list[Delta]:
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamCallFailed(self.upstream, "a stream event is not valid JSON") from None
        if not isinstance(data, dict):
            raise UpstreamCallFailed(self.upstream, "a stream event is not a JSON object")
        if event == "error" or data.get("type") == "error":
            raise self._stream_error(data)
        events = self._events
        deltas = events.feed(data)
        if events.model is not None and self.served_model is None:
            self.served_model = events.model
        if events.finished:
            self._finished.add(0)
            # Final now (message_delta's output count); before it, only the prompt is known.
            self._reported = events.usage
        return deltas

    def _counted(self) -> Usage:
        """Cut short: Anthropic's prompt count (message_start), ezlink's count of the rest."""
        counted = super()._counted()
        known = self._events.usage
        if known is not None:
            counted.prompt_tokens, counted.cached_tokens = known.prompt_tokens, known.cached_tokens
        return counted

    def _stream_error(self, data: dict[str, Any]) -> UpstreamCallFailed:
        message, _, _ = error_object_fields(data)
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        text = sanitize_message(message, self._connection.secrets)
        return UpstreamCallFailed(
            self.upstream,
            f"error in the stream: {kind or 'error'}: {text}",
            retryable=kind in RETRYABLE_STREAM_ERRORS,
            status=529 if kind == "overloaded_error" else None,
        )
