"""OpenAI's chat completions and legacy completions: rendering answers.

A generation's ``Delta`` pieces become either server-sent events (one chunk
object per piece, then the usage chunk if the client asked, then
``[DONE]``) or one whole response object, gathered here from the same
pieces. The response's ``model`` echoes the name the client asked for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ezlink.engine.generation_types import CollectedChoice, Delta, GenerationKind, Usage
from ezlink.errors import EzlinkError

DONE = b"data: [DONE]\n\n"


@dataclass
class Answer:
    """Who answers: the id, time and model name every chunk repeats."""

    kind: GenerationKind
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl-" if self.kind == "chat" else "cmpl-"
            self.id = prefix + secrets.token_hex(12)

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.kind == "chat" else "text_completion"

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def delta_body(delta: Delta) -> dict[str, Any]:
    """The `delta` object of a chat chunk: only the fields this piece carries."""
    body: dict[str, Any] = {}
    if delta.role is not None:
        body["role"] = delta.role
    if delta.content is not None:
        body["content"] = delta.content
    if delta.reasoning_content is not None:
        body["reasoning_content"] = delta.reasoning_content
    if delta.tool_calls:
        body["tool_calls"] = list(delta.tool_calls)
    return body


def render_chunk(answer: Answer, delta: Delta, *, with_usage_field: bool) -> bytes:
    """One SSE event for one piece."""
    chunk = answer._envelope(answer.chunk_object)
    if answer.kind == "chat":
        choice: dict[str, Any] = {
            "index": delta.choice,
            "delta": delta_body(delta),
            "logprobs": delta.logprobs,
            "finish_reason": delta.finish_reason,
        }
    else:
        choice = {
            "text": delta.content or "",
            "index": delta.choice,
            "logprobs": completion_logprobs(delta.logprobs.get("content"))
            if delta.logprobs
            else None,
            "finish_reason": delta.finish_reason,
        }
    chunk["choices"] = [choice]
    # With include_usage, OpenAI sends "usage": null on every chunk but the last.
    if with_usage_field:
        chunk["usage"] = None
    return sse(chunk)


def completion_logprobs(content: object) -> dict[str, Any] | None:
    """Chat-shaped logprobs ({token, logprob, top_logprobs: [...]} per token) in the
    legacy completions shape (parallel lists, top alternatives as a mapping)."""
    if not isinstance(content, list):
        return None
    tokens, logprobs, tops, offsets, offset = [], [], [], [], 0
    for item in content:
        token = str(item.get("token", ""))
        tokens.append(token)
        logprobs.append(item.get("logprob"))
        tops.append({top["token"]: top["logprob"] for top in item.get("top_logprobs") or []})
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def render_usage_chunk(answer: Answer, usage: Usage) -> bytes:
    """The last chunk when the client asked for usage: no choices, the usage."""
    chunk = answer._envelope(answer.chunk_object)
    chunk["choices"] = []
    chunk["usage"] = usage.to_openai()
    return sse(chunk)


def render_stream_error(error: EzlinkError) -> bytes:
    """An error after the first byte: the OpenAI error body as an event
    (openai-python raises it as an APIError), then the stream ends."""
    return sse(error.to_body())


class Collector:
    """Gathers a generation's pieces into whole choices (for a non-streamed answer)."""

    def __init__(self) -> None:
        self.choices: dict[int, CollectedChoice] = {}

    def add(self, delta: Delta) -> None:
        choice = self.choices.setdefault(delta.choice, CollectedChoice(index=delta.choice))
        if delta.content:
            choice.content += delta.content
        if delta.reasoning_content:
            choice.reasoning_content += delta.reasoning_content
        if delta.logprobs and isinstance(delta.logprobs.get("content"), list):
            choice.logprobs.extend(delta.logprobs["content"])
        for call in delta.tool_calls:
            _merge_tool_call(choice.tool_calls, call)
        if delta.finish_reason is not None:
            choice.finish_reason = delta.finish_reason

    def ordered(self) -> Iterable[CollectedChoice]:
        return (self.choices[index] for index in sorted(self.choices))


def _merge_tool_call(calls: list[dict[str, Any]], piece: dict[str, Any]) -> None:
    """Streamed tool calls arrive in pieces by `index`: name and arguments concatenated."""
    index = piece.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if piece.get("id"):
        call["id"] = piece["id"]
    if piece.get("type"):
        call["type"] = piece["type"]
    function = piece.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]


def render_whole(answer: Answer, collector: Collector, usage: Usage) -> bytes:
    """The whole response object of a non-streamed request."""
    if answer.kind == "chat":
        body = answer._envelope("chat.completion")
        body["choices"] = [_chat_choice(choice) for choice in collector.ordered()]
    else:
        body = answer._envelope("text_completion")
        body["choices"] = [
            {
                "text": choice.content,
                "index": choice.index,
                "logprobs": completion_logprobs(choice.logprobs) if choice.logprobs else None,
                "finish_reason": choice.finish_reason or "stop",
            }
            for choice in collector.ordered()
        ]
    body["usage"] = usage.to_openai()
    return orjson.dumps(body)


def _chat_choice(choice: CollectedChoice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.content if choice.content or not choice.tool_calls else None,
        "refusal": None,
    }
    if choice.reasoning_content:
        message["reasoning_content"] = choice.reasoning_content
    if choice.tool_calls:
        message["tool_calls"] = [_tool_call_without_index(call) for call in choice.tool_calls]
    return {
        "index": choice.index,
        "message": message,
        "logprobs": {"content": choice.logprobs} if choice.logprobs else None,
        "finish_reason": choice.finish_reason or "stop",
    }


def _tool_call_without_index(call: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in call.items() if key != "index"}
