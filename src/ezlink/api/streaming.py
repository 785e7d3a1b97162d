"""Streamed answers (a generation as server-sent events, speech as audio), settled exactly once.

Each piece is sent as it arrives (no buffering). After the first piece an
error can no longer change the status, so it becomes an error event and the
stream ends with ``[DONE]``; the client is billed for what it received.
When the client leaves, the generation is closed at once (a local model
stops within a token, an upstream's connection is closed) and what was
produced until then is billed. Cleanup runs shielded from cancellation:
Starlette cancels the sending task when the client disconnects, and an
unshielded ``await`` in that task would be cancelled again before it ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ezlink.accounts.service import TokenCounts, Units
from ezlink.api.metered import MeteredCall, token_counts
from ezlink.api.protocol.chat_render import (
    DONE,
    Answer,
    render_chunk,
    render_stream_error,
    render_usage_chunk,
)
from ezlink.engine.generation_types import Delta, Generation
from ezlink.errors import ClientClosedRequest, EzlinkError, InternalError

logger = logging.getLogger(__name__)


class GenerationStream:
    """One streamed answer: its first piece, its events, its settlement."""

    def __init__(
        self, call: MeteredCall, generation: Generation, answer: Answer, include_usage: bool
    ) -> None:
        self.call = call
        self.generation = generation
        self.answer = answer
        self.include_usage = include_usage
        self.metrics = call.state.metrics
        self.model = answer.model
        self._pieces = aiter(generation)
        self._first: Delta | None = None
        self._error: BaseException | None = ClientClosedRequest()
        self._finish_reason: str | None = None
        self._settled = False

    async def start(self) -> None:
        """Wait for the first piece: an error before it raises, to be answered
        as an ordinary error response (and settled by the metered call)."""
        try:
            self._first = await self.call.run(anext(self._pieces))
        except StopAsyncIteration:
            self._first = None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.generation.aclose()
            self.call.used(token_counts(self.generation.usage))
            raise
        self.call.hand_over()
        self.metrics.streams.inc()
        self.metrics.first_token.labels(self.model).observe(self.call.first_byte())

    def response(self, headers: dict[str, str]) -> StreamingResponse:
        return SettledStreamingResponse(
            self,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _chunk(self, delta: Delta) -> bytes:
        if delta.finish_reason is not None:
            self._finish_reason = delta.finish_reason
        return render_chunk(self.answer, delta, with_usage_field=self.include_usage)

    async def body(self) -> AsyncIterator[bytes]:
        inter_token = self.metrics.inter_token.labels(self.model)
        try:
            if self._first is not None:
                yield self._chunk(self._first)
            last = time.perf_counter()
            async for delta in self._pieces:
                now = time.perf_counter()
                inter_token.observe(now - last)
                last = now
                yield self._chunk(delta)
            await self.generation.aclose()
            if self.include_usage:
                yield render_usage_chunk(self.answer, self.generation.usage)
            self._error = None
            yield DONE
        except EzlinkError as exc:
            # The provider failed mid-stream (the circuit has counted it).
            self._error = exc
            yield render_stream_error(exc)
            yield DONE
        except Exception as exc:
            logger.error("stream failed (request %s)", self.call.facts.request_id, exc_info=exc)
            self._error = InternalError("The stream failed; the answer is incomplete.")
            yield render_stream_error(self._error)
            yield DONE
        finally:
            await self.finish()

    async def finish(self) -> None:
        """Close the generation and settle, once (shielded from cancellation)."""
        if self._settled:
            return
        self._settled = True
        self.metrics.streams.dec()
        with anyio.CancelScope(shield=True):
            await self.generation.aclose()
            usage = self.generation.usage
            meter = self.call.meter
            if meter is not None:
                meter.finish_reason = self._finish_reason
            self.metrics.generated_tokens.labels(self.model, "prompt").inc(usage.prompt_tokens)
            self.metrics.generated_tokens.labels(self.model, "completion").inc(
                usage.completion_tokens
            )
            await self.call.settle_stream(token_counts(usage), error=self._error)


class SettledStream(Protocol):
    """A streamed answer that settles itself: `body()` sends it, `finish()`
    (idempotent) closes its source and settles."""

    def body(self) -> AsyncIterator[bytes]: ...

    async def finish(self) -> None: ...


class AudioStream:
    """One streamed speech answer: its first piece, its bytes, its settlement."""

    def __init__(self, call: MeteredCall, chunks: AsyncIterator[bytes], units: Units) -> None:
        self.call = call
        self.chunks = chunks
        self.units = units
        self._first = b""
        self._error: BaseException | None = ClientClosedRequest()
        self._settled = False

    async def start(self) -> None:
        """Wait for the first piece; an error before it is raised (and settled by the call)."""
        try:
            self._first = await self.call.run(anext(self.chunks))
        except StopAsyncIteration:
            self._first = b""
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _close(self.chunks)
            raise
        self.call.hand_over()
        self.call.first_byte()

    async def body(self) -> AsyncIterator[bytes]:
        try:
            if self._first:
                yield self._first
            async for chunk in self.chunks:
                yield chunk
            self._error = None
        except EzlinkError as exc:
            # After the first byte the status is sent: the audio just ends short.
            self._error = exc
        except Exception as exc:
            logger.error("speech failed (request %s)", self.call.facts.request_id, exc_info=exc)
            self._error = InternalError("The speech stream failed; the audio is incomplete.")
        finally:
            await self.finish()

    async def finish(self) -> None:
        """Close the audio and settle, once (shielded: Starlette cancels on disconnect)."""
        if self._settled:
            return
        self._settled = True
        with anyio.CancelScope(shield=True):
            await _close(self.chunks)
            if self.call.meter is not None:
                self.call.meter.units = self.units
            await self.call.settle_stream(TokenCounts(), error=self._error)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    """Close a speaker's chunks (an async generator, or any iterator with aclose)."""
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()


class SettledStreamingResponse(StreamingResponse):
    """Settles its stream even when the client left before the first piece was
    pulled (then the body generator never ran, and its cleanup with it)."""

    def __init__(self, stream: SettledStream, **kwargs: Any) -> None:
        super().__init__(stream.body(), **kwargs)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.stream.finish()
