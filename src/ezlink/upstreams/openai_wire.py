"""OpenAI's chat and legacy completion wire format, as an upstream speaks it:
the body we send, and the deltas and usage of what comes back (a stream's
chunks or a whole answer). Pure functions; ``openai_chat`` makes the calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.engine.token_counting import tool_call_texts

# The event that ends a stream.
DONE = "[DONE]"


def upstream_body(request: GenerationRequest, upstream_model: str) -> dict[str, Any]:
    """The client's body with the upstream's model name (and usage asked of a stream)."""
    body = {**request.body, "model": upstream_model}
    if request.stream:
        body["stream"] = True
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return body


def parse_usage(value: Any) -> Usage | None:
    """An OpenAI usage object as ``Usage``; None when it is not one."""
    prompt = _count(value.get("prompt_tokens")) if isinstance(value, dict) else None
    if prompt is None:
        return None
    prompt_details = value.get("prompt_tokens_details")
    completion_details = value.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=_count(value.get("completion_tokens")) or 0,
        cached_tokens=_count(cached) or 0,
        reasoning_tokens=_count(reasoning) or 0,
    )


def _count(value: Any) -> int | None:
    """A token count, or None for anything that is not one."""
    return value if type(value) is int and value >= 0 else None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def choice_deltas(data: dict[str, Any], *, chat: bool, whole: bool) -> list[Delta]:
    """The Deltas of one stream chunk (``delta``), or of a whole answer (``message``)."""
    deltas: list[Delta] = []
    choices = data.get("choices")
    for position, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, dict):
            continue
        index = _count(choice.get("index"))
        index = position if index is None else index
        logprobs = choice.get("logprobs") if isinstance(choice.get("logprobs"), dict) else None
        finish = text_or_none(choice.get("finish_reason"))
        content: str | None
        role: str | None = None
        calls: tuple[dict[str, Any], ...] = ()
        reasoning: str | None = None
        if not chat:
            content = text_or_none(choice.get("text"))
        else:
            part = choice.get("message" if whole else "delta")
            part = part if isinstance(part, dict) else {}
            content, role = text_or_none(part.get("content")), text_or_none(part.get("role"))
            raw_calls = part.get("tool_calls")
            items = (
                [c for c in raw_calls if isinstance(c, dict)] if isinstance(raw_calls, list) else []
            )
            # A whole message's calls carry no `index`; stream pieces do: give it, so
            # that both are collected alike.
            calls = tuple({"index": i, **c} if whole else c for i, c in enumerate(items))
            reasoning = text_or_none(part.get("reasoning_content")) or text_or_none(
                part.get("reasoning")
            )
        empty = content is None and role is None and not calls and reasoning is None
        if empty and finish is None and logprobs is None:
            continue
        deltas.append(
            Delta(
                choice=index,
                content=content,
                role=role,
                tool_calls=calls,
                reasoning_content=reasoning,
                logprobs=logprobs,
                finish_reason=finish,
            )
        )
    return deltas


def generated_texts(delta: Delta) -> Iterable[tuple[str, str]]:
    """What a delta adds to the completion, keyed by the text it continues
    (a choice's content, its reasoning, one tool call's name or arguments):
    each text is counted joined, as the model produced it, not piece by piece."""
    if delta.content:
        yield f"{delta.choice}:content", delta.content
    if delta.reasoning_content:
        yield f"{delta.choice}:reasoning", delta.reasoning_content
    for position, call in enumerate(delta.tool_calls):
        index = call.get("index", position)
        for text in tool_call_texts([call]):
            yield f"{delta.choice}:tool:{index}", text
