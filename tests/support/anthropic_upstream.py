"""A test upstream speaking Anthropic's Messages API (``POST /v1/messages``).

A real HTTP server (uvicorn, in a thread, on a free loopback port): answers
whole or as server-sent events with the real event sequence (message_start,
content_block_start/delta/stop, ping, message_delta, message_stop). It is
strict where Anthropic is: the key in ``x-api-key``, ``anthropic-version``,
``max_tokens``, roles alternating from a user message, no empty text block,
each tool_result answering a tool_use of the message before, temperature in
0..1; a request breaking one gets Anthropic's 400 (or 401).

The answer is predictable from the request:

* text: ``REPLY_PREFIX`` + the last user text, one output token per word;
  cut at ``max_tokens`` words (stop_reason ``max_tokens``) or before a stop
  sequence (``stop_sequence``);
* with tools, a last user message asking for "weather": a tool_use of the
  first tool, ``TOOL_INPUT`` (stop_reason ``tool_use``); a last message of tool
  results: ``TOOL_REPLY_PREFIX`` + their text;
* images: each is described ("[image base64 image/png]", "[image url URL]")
  ahead of the text;
* usage: ``INPUT_TOKENS`` input tokens, and with a ``system`` prompt
  ``CACHE_READ_TOKENS`` cache reads and ``CACHE_WRITE_TOKENS`` cache writes.

The upstream model name picks a fault:

    error-429           429 rate_limit_error with retry-after: 1
    error-529           529 overloaded_error
    error-400           400 whose message carries ``SECRET_IN_ERROR``, the
                        received key and a URL
    error-stream        a stream that sends some text, then an error event
    error-stream-early  a stream whose error event comes before any content

``calls`` records every request: path, headers, JSON body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.threaded_server import ThreadedServer

API_KEY = "sk-ant-test-key-0123456789abcdef"
SECRET_IN_ERROR = "sk-ant-api03-leaked-secret-0123456789"
REPLY_PREFIX = "Hello from Claude. You said:"
TOOL_REPLY_PREFIX = "The tool said:"
TOOL_INPUT = {"city": "Paris", "unit": "celsius"}
INPUT_TOKENS = 12
CACHE_READ_TOKENS = 100
CACHE_WRITE_TOKENS = 20
VERSION = "2023-06-01"


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


class Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


def check_request(body: dict[str, Any]) -> None:
    """Anthropic's own checks, as far as these tests need them."""
    if not isinstance(body.get("max_tokens"), int):
        raise Refused("max_tokens: Field required")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Refused("temperature: Input should be less than or equal to 1")
    messages = body.get("messages")
    if not messages:
        raise Refused("messages: at least one message is required")
    previous_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise Refused(f"messages: roles must alternate between user and assistant ({index})")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        tool_ids: set[str] = set()
        for block in blocks:
            if block.get("type") == "text" and not block.get("text"):
                raise Refused(f"messages.{index}: text content blocks must be non-empty")
            if block.get("type") == "tool_use":
                tool_ids.add(block["id"])
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in (
                previous_tool_ids
            ):
                raise Refused(
                    f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks"
                )
        previous_tool_ids = tool_ids


def plan_answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None, int]:
    """(content blocks, stop_reason, stop_sequence, output tokens) for a request."""
    content = body["messages"][-1]["content"]
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else content
    )
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results:
        said = " ".join(_text_of(b.get("content", "")) for b in results)
        words = f"{TOOL_REPLY_PREFIX} {said}".split()
    else:
        text = _text_of(blocks)
        if body.get("tools") and "weather" in text.lower():
            tool = body["tools"][0]
            call = {"type": "tool_use", "id": "toolu_01", "name": tool["name"], "input": TOOL_INPUT}
            intro = {"type": "text", "text": "Let me check."}
            return [intro, call], "tool_use", None, 10
        images = []
        for block in blocks:
            if block.get("type") == "image":
                source: dict[str, Any] = block["source"]
                detail = source.get("media_type") if source["type"] == "base64" else source["url"]
                images.append(f"[image {source['type']} {detail}]")
        words = [*images, *f"{REPLY_PREFIX} {text}".split()]
    reply = " ".join(words)
    stop_reason, stop_sequence = "end_turn", None
    for sequence in body.get("stop_sequences") or ():
        if sequence in reply:
            reply, stop_reason, stop_sequence = (
                reply.split(sequence, 1)[0],
                "stop_sequence",
                sequence,
            )
            words = reply.split()
    if len(words) > body["max_tokens"]:
        words = words[: body["max_tokens"]]
        reply, stop_reason, stop_sequence = " ".join(words), "max_tokens", None
    return [{"type": "text", "text": reply}], stop_reason, stop_sequence, len(words)


def usage_of(body: dict[str, Any], output_tokens: int) -> dict[str, int]:
    cached = bool(body.get("system"))
    return {
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": CACHE_WRITE_TOKENS if cached else 0,
        "cache_read_input_tokens": CACHE_READ_TOKENS if cached else 0,
        "output_tokens": output_tokens,
    }


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def stream_events(
    body: dict[str, Any],
    model: str,
    blocks: list[dict[str, Any]],
    stop: tuple[str, str | None, int],
) -> AsyncIterator[bytes]:
    """The real event sequence of one answer, text in word pieces, tool input in pieces."""
    stop_reason, stop_sequence, output_tokens = stop
    usage = usage_of(body, 1)
    message: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    yield sse("message_start", {"type": "message_start", "message": message})
    if model == "error-stream-early":
        yield sse(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
        return
    yield sse("ping", {"type": "ping"})
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            yield sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            words = block["text"].split(" ")
            for position, word in enumerate(words):
                piece = word if position == 0 else " " + word
                delta = {"type": "text_delta", "text": piece}
                yield sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
                if model == "error-stream":
                    error = {
                        "type": "overloaded_error",
                        "message": f"Overloaded (key {SECRET_IN_ERROR})",
                    }
                    yield sse("error", {"type": "error", "error": error})
                    return
        else:
            start = {**block, "input": {}}
            yield sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            text = json.dumps(block["input"])
            pieces = ["", text[:7], text[7:]]
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    yield sse(
        "message_delta",
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
    )
    yield sse("message_stop", {"type": "message_stop"})


class AnthropicUpstream(ThreadedServer):
    """The server in a thread; a context manager. ``api_url`` is its ``base_url``."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.calls: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])
        super().__init__(self.app)

    def calls_for(self, model: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["body"].get("model") == model]

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        headers = dict(request.headers)
        self.calls.append({"path": request.url.path, "headers": headers, "body": body})
        if headers.get("x-api-key") != self.api_key:
            return error(401, "authentication_error", "invalid x-api-key")
        if headers.get("anthropic-version") != VERSION:
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        model = body.get("model", "")
        if model == "error-429":
            retry = {"retry-after": "1"}
            return error(
                429, "rate_limit_error", "Number of requests has exceeded your rate limit", retry
            )
        if model == "error-529":
            return error(529, "overloaded_error", "Overloaded")
        if model == "error-400":
            message = (
                f"prompt is too long (key {SECRET_IN_ERROR}, sent {headers.get('x-api-key')}, "
                "see https://docs.internal.example/errors)"
            )
            return error(400, "invalid_request_error", message)
        try:
            check_request(body)
        except Refused as refused:
            return error(400, "invalid_request_error", refused.message)
        blocks, stop_reason, stop_sequence, output_tokens = plan_answer(body)
        if body.get("stream"):
            events = stream_events(body, model, blocks, (stop_reason, stop_sequence, output_tokens))
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": usage_of(body, output_tokens),
            }
        )
