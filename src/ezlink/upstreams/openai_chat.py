"""OpenAI's /chat/completions and /completions on an OpenAI-compatible upstream.

The client's JSON body goes to the upstream as it came, with only ``model``
replaced by the upstream's name and, for streams, ``stream_options.
include_usage`` set (whether the client gets the usage chunk is the route's
business; ``Generation.usage`` is always filled). Fields ezlink does not know
reach the upstream untouched.

Streams are read line by line as they arrive (server-sent events), one
``Delta`` per choice in each chunk, never buffered whole. Answers asked whole
(``stream: false``) are one call; their choices become one ``Delta`` each,
and ``OpenAIGeneration.response`` keeps the upstream's object as received, so
that a route can relay fields a ``Delta`` has no room for (``refusal``,
``annotations``, ``system_fingerprint``...).

Usage is the upstream's last usage object (some upstreams repeat a running
total in every chunk: it is never summed). Where the upstream gives none, or
the stream is cut or closed early, ezlink counts the prompt and what was
received (``engine.token_counting``) and sets ``counted_by_ezlink``.

Timeouts (``UpstreamConfig``): ``connect_timeout`` to connect;
``first_token_timeout`` from sending to the first chunk, ``idle_timeout``
between chunks, ``stream_timeout`` for the whole stream; ``timeout`` for an
answer asked whole. ``aclose()`` closes the HTTP response, and with it the
connection, at once: the upstream sees the client leave.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.engine.token_counting import (
    count_chat_prompt,
    count_completion_prompt,
    count_output,
    encoding_for,
    encoding_ready,
)
from ezlink.upstreams.http import (
    ConnectedClient,
    UpstreamCallFailed,
    UpstreamCallTimedOut,
    UpstreamConnection,
    UpstreamUnreachable,
    error_object_fields,
    sanitize_message,
    status_error,
    transport_reason,
)
from ezlink.upstreams.openai_wire import (
    DONE,
    choice_deltas,
    generated_texts,
    parse_usage,
    text_or_none,
    upstream_body,
)

# An answer asked whole is read no further than this (a long answer is ~100 KiB).
MAX_WHOLE_ANSWER_BYTES = 32 << 20
# An error answer is read no further than this.
MAX_ERROR_BYTES = 64 << 10


class OpenAIChatClient(ConnectedClient):
    """A ``GenerationClient`` (``upstreams.providers``) for OpenAI-compatible upstreams."""

    def generate(self, request: GenerationRequest, upstream_model: str) -> OpenAIGeneration:
        """A lazy generation: the call is made when it is first iterated."""
        return OpenAIGeneration(self.connection, request, upstream_model)


async def _drain(lines: AsyncIterator[str], deadline: float) -> None:
    """Read what follows [DONE] (the body's end), so the connection goes back to
    the pool; an upstream that keeps sending is left, not waited for."""
    try:
        async with asyncio.timeout_at(deadline):
            async for _ in lines:
                pass
    except (TimeoutError, httpx.TransportError):
        pass


class OpenAIGeneration:
    """One chat or completion call (a ``Generation``): iterate it for deltas."""

    def __init__(
        self, connection: UpstreamConnection, request: GenerationRequest, upstream_model: str
    ) -> None:
        self.usage = Usage()
        self.served_model: str | None = None
        # stream: false: the upstream's whole answer, as it sent it (its own `model`).
        self.response: dict[str, Any] | None = None
        self.upstream = connection.name
        self._connection = connection
        self._request = request
        self._model = upstream_model
        self._chat = request.kind == "chat"
        self._reported: Usage | None = None
        # Text received, by what it continues (``generated_texts``).
        self._generated: dict[str, list[str]] = {}
        self._finished: set[int] = set()
        self._http: httpx.Response | None = None
        self._deltas: AsyncIterator[Delta] | None = None
        self._sent = False
        self._closed = False
        self._settled = False

    def __aiter__(self) -> AsyncIterator[Delta]:
        if self._deltas is None:
            self._deltas = self._run()
        return self._deltas

    async def aclose(self) -> None:
        """Close the upstream response (the connection with it) now; usage is final after."""
        if self._closed:
            return
        self._closed = True
        if self._http is not None:
            await self._http.aclose()
        if self._deltas is not None:
            # Iterated by another task (RuntimeError): its read ends now the response is closed.
            with contextlib.suppress(RuntimeError):
                await self._deltas.aclose()  # type: ignore[attr-defined]
        self._settle()

    async def _run(self) -> AsyncIterator[Delta]:
        if self._closed:
            return
        if not encoding_ready(self._model):
            # Loaded now, off the loop, not when usage is counted on it.
            await asyncio.to_thread(encoding_for, self._model)
        pieces = self._stream() if self._request.stream else self._whole()
        try:
            async with self._connection.slots:
                self._sent = True
                async for delta in pieces:
                    for key, text in generated_texts(delta):
                        self._generated.setdefault(key, []).append(text)
                    yield delta
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]
            self._settle()

    def _settle(self) -> None:
        """Final usage: the upstream's, or (none given, or cut short) ezlink's count."""
        if self._settled:
            return
        self._settled = True
        if self._reported is not None:
            self._set_usage(self._reported)
        elif self._sent:
            self._set_usage(self._counted())

    def _set_usage(self, usage: Usage) -> None:
        # In place: a holder of `self.usage` (the routed generation) sees the final count.
        self.usage.prompt_tokens = usage.prompt_tokens
        self.usage.completion_tokens = usage.completion_tokens
        self.usage.cached_tokens = usage.cached_tokens
        self.usage.reasoning_tokens = usage.reasoning_tokens
        self.usage.counted_by_ezlink = usage.counted_by_ezlink

    def _counted(self) -> Usage:
        request, model = self._request, self._model or self._request.model
        if self._chat:
            messages = request.messages or tuple(request.body.get("messages") or ())
            tools = request.tools or tuple(
                request.body.get("tools") or request.body.get("functions") or ()
            )
            prompt = count_chat_prompt(model, messages, tools)
        else:
            prompt_text = request.prompt
            if prompt_text is None:
                raw = request.body.get("prompt")
                prompt_text = raw if isinstance(raw, str) else ""
            prompt = count_completion_prompt(model, prompt_text)
        completion = count_output(model, ("".join(texts) for texts in self._generated.values()))
        return Usage(prompt_tokens=prompt, completion_tokens=completion, counted_by_ezlink=True)

    @property
    def _path(self) -> str:
        return "chat/completions" if self._chat else "completions"

    def _timed_out(self, what: str) -> UpstreamCallTimedOut:
        return UpstreamCallTimedOut(self.upstream, what)

    def _transport_error(self, exc: httpx.TransportError) -> UpstreamCallFailed:
        config = self._connection.config
        if isinstance(exc, httpx.ConnectTimeout):
            return self._timed_out(f"no connection within {config.connect_timeout:g}s")
        if isinstance(exc, httpx.TimeoutException):
            return self._timed_out(f"the request was not sent within {config.timeout:g}s")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamUnreachable(self.upstream, "connection refused or unreachable")
        return UpstreamCallFailed(self.upstream, transport_reason(exc))

    async def _read(self, response: httpx.Response, limit: int) -> bytes:
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > limit:
                raise UpstreamCallFailed(
                    self.upstream, f"the answer exceeds {limit / (1 << 20):.1f} MiB"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _request_body(self) -> dict[str, Any]:
        """What the provider is sent: the client's body, model mapped, usage asked."""
        return upstream_body(self._request, self._model)

    async def _open(self, timeout: httpx.Timeout) -> httpx.Response:
        """Send the request; the response's head is read, its body not yet."""
        http = self._connection.http
        content = orjson.dumps(self._request_body())
        request = http.build_request("POST", self._path, content=content, timeout=timeout)
        self._http = response = await http.send(request, stream=True)
        if response.status_code >= 300:
            body = await self._read(response, MAX_ERROR_BYTES)
            raise status_error(
                self.upstream,
                response.status_code,
                response.headers,
                body,
                self._connection.secrets,
            )
        return response

    def _whole_deltas(self, content: bytes) -> list[Delta]:
        try:
            data: Any = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamCallFailed(self.upstream, "the answer is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamCallFailed(self.upstream, "the answer has no `choices` list")
        self.response = data
        self.served_model = text_or_none(data.get("model"))
        self._reported = parse_usage(data.get("usage"))
        return choice_deltas(data, chat=self._chat, whole=True)

    async def _whole(self) -> AsyncIterator[Delta]:
        """An answer asked whole: one call within `timeout`."""
        config = self._connection.config
        timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        try:
            async with asyncio.timeout(config.timeout):
                response = await self._open(timeout)
                content = await self._read(response, MAX_WHOLE_ANSWER_BYTES)
        except TimeoutError:
            raise self._timed_out(f"no answer within {config.timeout:g}s") from None
        except httpx.TransportError as exc:
            if self._closed:
                return
            raise self._transport_error(exc) from None
        finally:
            if self._http is not None:
                await self._http.aclose()
        for delta in self._whole_deltas(content):
            yield delta

    async def _stream(self) -> AsyncIterator[Delta]:
        """A streamed answer, chunk by chunk, each wait bounded by its timeout."""
        config = self._connection.config
        loop = asyncio.get_running_loop()
        end = loop.time() + config.stream_timeout
        deadline = min(end, loop.time() + config.first_token_timeout)
        waiting_for = f"no first chunk within {config.first_token_timeout:g}s"
        # Reads are bounded here, not by httpx: its read timeout is per socket read.
        timeout = httpx.Timeout(None, connect=config.connect_timeout, write=config.timeout)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._open(timeout)
            except TimeoutError:
                raise self._timed_out(waiting_for) from None
            if response.headers.get("content-type", "").startswith("application/json"):
                # The upstream ignored `stream: true` and answered whole.
                content = await self._read(response, MAX_WHOLE_ANSWER_BYTES)
                for delta in self._whole_deltas(content):
                    yield delta
                return
            lines = response.aiter_lines()
            data: list[str] = []
            event = ""
            while True:
                try:
                    async with asyncio.timeout_at(min(deadline, end)):
                        line = await anext(lines, None)
                except TimeoutError:
                    if loop.time() >= end:
                        waiting_for = f"the stream took longer than {config.stream_timeout:g}s"
                    raise self._timed_out(waiting_for) from None
                if line is None or line == "":
                    if data:  # a blank line (or the end) dispatches the event
                        payload, data, kind, event = "\n".join(data), [], event, ""
                        if payload.strip() == DONE:
                            await _drain(lines, min(deadline, end))
                            return
                        for delta in self._chunk_deltas(payload, kind):
                            yield delta
                        deadline = loop.time() + config.idle_timeout
                        waiting_for = f"no chunk for {config.idle_timeout:g}s"
                    if line is None:
                        break
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("event:"):
                    event = line[6:].strip()
            if not self._finished:
                raise UpstreamCallFailed(self.upstream, "the stream ended before its last chunk")
        except httpx.TransportError as exc:
            if self._closed:
                return
            raise self._transport_error(exc) from None
        except httpx.StreamError:
            if self._closed:
                return  # closed by aclose() while another task was reading
            raise
        finally:
            if self._http is not None:
                await self._http.aclose()

    def _chunk_deltas(self, payload: str, event: str) -> list[Delta]:
        try:
            chunk: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamCallFailed(self.upstream, "a stream chunk is not valid JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamCallFailed(self.upstream, "a stream chunk is not a JSON object")
        if event == "error" or "error" in chunk:
            message, _, _ = error_object_fields(chunk)
            text = sanitize_message(message, self._connection.secrets)
            raise UpstreamCallFailed(self.upstream, f"error in the stream: {text}")
        if self.served_model is None:
            self.served_model = text_or_none(chunk.get("model"))
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            self._reported = usage  # the last one counts: some send a running total
        deltas = choice_deltas(chunk, chat=self._chat, whole=False)
        self._finished.update(d.choice for d in deltas if d.finish_reason is not None)
        return deltas
