"""A minimal, fast OpenAI-compatible chat upstream for the relay benchmark.

    python bench/fast_upstream.py --port 9000

``POST /v1/chat/completions`` answers a fixed short reply (8 content chunks,
"Hello! How can I help you today?"), whole or as server-sent events, with
usage (in a stream: only where ``stream_options.include_usage`` asks, as
OpenAI does); ``GET /v1/models`` lists the model. Anything else: 404.

Written on a bare ``asyncio.Protocol`` (uvloop where installed), not on a
web framework, so that it costs as little CPU per request as possible and
is never the bottleneck of what it measures: HTTP/1.1 keep-alive, bodies by
``Content-Length`` only, and each answer written in one ``write`` (a stream
too: its events are framed as SSE but sent together, so the time to first
token through a proxy is the proxy's own). Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

REPLY_PIECES = ["Hello", "!", " How", " can", " I", " help", " you", " today?"]
PROMPT_TOKENS = 12
COMPLETION_TOKENS = len(REPLY_PIECES)
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}
MAX_BODY = 1 << 20


def whole_answer(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-fast",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(REPLY_PIECES)},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        },
        separators=(",", ":"),
    ).encode()


def stream_answer(model: str, include_usage: bool) -> bytes:
    created = int(time.time())

    def event(choices: list[dict[str, object]], **extra: object) -> str:
        chunk = {
            "id": "chatcmpl-fast",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"

    parts = [
        event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    ]
    parts += [
        event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for piece in REPLY_PIECES
    ]
    parts.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        parts.append(event([], usage=USAGE))
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Handler(asyncio.Protocol):
    """One keep-alive connection: requests parsed from the buffer as they complete."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length > MAX_BODY:
                self.transport.write(response("413 Payload Too Large", b"{}"))
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path = [*lines[0].split(" "), "", ""][:2]
            self.transport.write(self.answer(method, path.split("?")[0], body))

    def answer(self, method: str, path: str, body: bytes) -> bytes:
        if method == "POST" and path.endswith("/chat/completions"):
            try:
                request = json.loads(body)
            except ValueError:
                return response("400 Bad Request", b'{"error":{"message":"bad json"}}')
            model = str(request.get("model", "fast"))
            if request.get("stream"):
                options = request.get("stream_options") or {}
                payload = stream_answer(model, bool(options.get("include_usage")))
                return response("200 OK", payload, "text/event-stream")
            return response("200 OK", whole_answer(model))
        if method == "GET" and path.endswith("/models"):
            listing = {
                "object": "list",
                "data": [{"id": "fast", "object": "model", "owned_by": "bench"}],
            }
            return response("200 OK", json.dumps(listing).encode())
        return response("404 Not Found", b'{"error":{"message":"not found"}}')


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Handler, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
