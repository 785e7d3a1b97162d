"""A fake OpenAI-compatible chat upstream: /v1/chat/completions and
/v1/completions, whole or streamed (SSE), served by uvicorn on a free
loopback port in a thread of the test process (``ChatUpstream``).

Replies are deterministic: the last user message (or the prompt) echoed word
by word, one chunk per word. Usage is exact and predictable (``usage_for``):
deliberately not a tiktoken count, so that a test can tell the upstream's
usage from ezlink's own. As OpenAI does, a stream carries usage only when
``stream_options.include_usage`` asks for it.

The request's ``model`` picks the behaviour:

    echo (or any other)   the reply above
    tool-call             one tool call (get_weather, {"city": "Paris"}) in pieces
    reasoning             reasoning_content pieces, then the reply
    usage-every-chunk     a running usage object in every chunk (the last is right)
    no-usage              never any usage
    slow-stream           a chunk every `x-chunk-delay` seconds (header; 0.05)
    slow-first-token      `x-delay` seconds (header; 2) before the first chunk
    stall-mid-stream      two chunks, then nothing until the client leaves
    drop-mid-stream       two chunks, then the connection is cut
    malformed-chunk       a first chunk that is not JSON
    malformed-mid-stream  two chunks, then one that is not JSON
    error-mid-stream      two chunks, then an OpenAI error object in the stream
    429-retry-after       429 with Retry-After: 1
    500                   500 with an OpenAI error
    400                   400 whose message carries a key, a URL with credentials, a stack
    404                   404 model_not_found

Every request is recorded (path, body, headers, times); so is the moment a
client leaves before its answer is complete (``disconnected_at``, monotonic).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.threaded_server import ThreadedServer

SECRET_IN_ERROR = "sk-upstream-secret-0123456789"
TOOL_ARGUMENT_PIECES = ('{"city"', ': "Par', 'is"}')
REASONING_PIECES = ("Thinking", " about", " it.")
CACHED_TOKENS = 3
REASONING_TOKENS = 2

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def reply_words(body: dict[str, Any]) -> list[str]:
    """The echoed reply, as its chunks: the words of the last user message (or prompt)."""
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = str(content)
    else:
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + words[-1:]


def usage_for(body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    """The exact usage this upstream reports: 1000 + bytes of the request's JSON as prompt."""
    prompt = 1000 + len(json.dumps(body.get("messages", body.get("prompt"))))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
    }


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class ChatUpstream(ThreadedServer):
    """The fake upstream in a thread; a context manager. ``received`` lists requests."""

    def __init__(self) -> None:
        super().__init__(
            self.app, log_level="critical", interface="asgi3", timeout_graceful_shutdown=1
        )
        self.received: list[dict[str, Any]] = []

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in list(self.received) if r["body"].get("model") == model]

    def wait_for_disconnect(self, record: dict[str, Any], timeout: float = 2.0) -> float | None:
        """The monotonic time the client left this request, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while record.get("disconnected_at") is None and time.monotonic() < deadline:
            time.sleep(0.001)
        return record.get("disconnected_at")

    async def app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record: dict[str, Any] = {
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode(),
            "headers": headers,
            "body": json.loads(body) if body else {},
            "received_at": time.monotonic(),
            "disconnected_at": None,
        }
        self.received.append(record)
        state = {"complete": False}

        async def send_tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                state["complete"] = True
            await send(message)

        answer = asyncio.ensure_future(self.answer(record, send_tracked))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state["complete"]:
                record["disconnected_at"] = time.monotonic()
                answer.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await answer
        except asyncio.CancelledError:
            if record["disconnected_at"] is None:
                raise
        finally:
            watcher.cancel()

    async def answer(self, record: dict[str, Any], send: Send) -> None:
        path, body, headers = record["path"], record["body"], record["headers"]
        if not path.endswith(("/chat/completions", "/completions")):
            return await respond(send, 404, error_body("no such route", "invalid_request_error"))
        model = str(body.get("model", ""))
        if model == "429-retry-after":
            error = error_body("slow down", "rate_limit", "rate_limit_exceeded")
            return await respond(send, 429, error, {"retry-after": "1"})
        if model == "500":
            return await respond(send, 500, error_body("internal failure", "server_error"))
        if model == "404":
            error = error_body("The model `404` does not exist", "invalid_request_error")
            return await respond(send, 404, error)
        if model == "400":
            message = (
                f"Bad messages (key {SECRET_IN_ERROR}, see http://admin:hunter2@internal.example/v1)"
                '\nTraceback (most recent call last):\n  File "/srv/app.py", line 1'
            )
            error = error_body(message, "invalid_request_error", "bad_messages")
            return await respond(send, 400, error)
        chat = path.endswith("/chat/completions")
        if body.get("stream"):
            return await self.stream(send, body, headers, chat)
        return await respond(send, 200, whole_answer(body, chat))

    async def stream(
        self, send: Send, body: dict[str, Any], headers: dict[str, str], chat: bool
    ) -> None:
        model = body["model"]
        sse_headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})

        async def event(data: str) -> None:
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {data}\n\n".encode(),
                    "more_body": True,
                }
            )

        if model == "slow-first-token":
            await asyncio.sleep(float(headers.get("x-delay", "2")))
        if model == "malformed-chunk":
            await event('{"choices": [{"index": 0, "delta": {"content": "x"')
        chunks = stream_chunks(body, chat)
        want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        delay = float(headers.get("x-chunk-delay", "0.05")) if model == "slow-stream" else 0.0
        for number, chunk in enumerate(chunks):
            if number == 2 and model == "stall-mid-stream":
                await asyncio.sleep(3600)
            if number == 2 and model == "drop-mid-stream":
                raise RuntimeError("the upstream drops the connection")
            if number == 2 and model == "malformed-mid-stream":
                await event("{not json")
            if number == 2 and model == "error-mid-stream":
                message = f"overloaded (key {SECRET_IN_ERROR})"
                await event(json.dumps(error_body(message, "server_error")))
            if model == "usage-every-chunk" and want_usage:
                chunk = {**chunk, "usage": usage_for(body, number + 1)}
            await event(json.dumps(chunk))
            if delay:
                await asyncio.sleep(delay)
        if want_usage and model != "no-usage":
            final = {**envelope(body, chat), "choices": [], "usage": usage_for(body, len(chunks))}
            await event(json.dumps(final))
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def envelope(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": "cmpl-test", "object": kind, "created": 1, "model": f"{body['model']}-served"}


def pieces(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The reply's pieces as chat deltas (without role)."""
    model = body["model"]
    if model == "tool-call":
        first = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        rest = [{"index": 0, "function": {"arguments": piece}} for piece in TOOL_ARGUMENT_PIECES]
        return [{"tool_calls": [call]} for call in [first, *rest]]
    found = [{"reasoning_content": p} for p in REASONING_PIECES] if model == "reasoning" else []
    return found + [{"content": word} for word in reply_words(body)]


def stream_chunks(body: dict[str, Any], chat: bool) -> list[dict[str, Any]]:
    finish = "tool_calls" if body["model"] == "tool-call" else "stop"
    head = envelope(body, chat)
    if not chat:
        words = reply_words(body)
        return [
            {**head, "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]}
            for w in words
        ] + [{**head, "choices": [{"index": 0, "text": "", "finish_reason": finish}]}]
    deltas = [{"role": "assistant", "content": ""}, *pieces(body)]
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    return [*chunks, {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}]


def whole_answer(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    head = envelope(body, chat)
    words = reply_words(body)
    answer: dict[str, Any] = {**head, "object": "chat.completion" if chat else "text_completion"}
    if not chat:
        answer["choices"] = [
            {"index": 0, "text": "".join(words), "logprobs": None, "finish_reason": "stop"}
        ]
    elif body["model"] == "tool-call":
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "".join(TOOL_ARGUMENT_PIECES)},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        answer["choices"] = [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
    else:
        message = {"role": "assistant", "content": "".join(words), "refusal": None}
        answer["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
    if body["model"] != "no-usage":
        answer["usage"] = usage_for(body, len(words))
    return answer


async def respond(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send(
        {"type": "http.response.body", "body": json.dumps(body).encode(), "more_body": False}
    )
