"""OpenAI chat ↔ Anthropic Messages, both ways. Pure functions; ``anthropic``
makes the calls.

Out (``messages_body``): system and developer messages become the top-level
``system``; text and ``image_url`` parts become text and image blocks (a
``data:`` URL a base64 source, an http(s) URL a url source); an assistant's
``tool_calls`` become ``tool_use`` blocks and ``tool`` messages ``tool_result``
blocks of a user message (consecutive messages of one role are merged, as
Anthropic wants roles to alternate); ``tools`` and ``tool_choice``,
``max_tokens`` (required there), ``temperature`` (clamped to Anthropic's
0..1), ``top_p``, ``stop`` and ``user`` are translated.

What Anthropic cannot do is refused with a 400 naming the field: ``n`` > 1,
``logprobs``, legacy ``functions``, audio and file parts, and legacy
completions. ``response_format`` json_object / json_schema has no field
there: it becomes an instruction appended to ``system`` (with the schema), so
the answer is JSON by instruction, not by a guarantee. ``seed`` and the
penalties have no equivalent and are dropped.

Back (``message_deltas``, ``StreamTranslator``): text blocks become
``content``, ``thinking`` blocks ``reasoning_content``, ``tool_use`` blocks
OpenAI ``tool_calls`` (arguments as a JSON string), ``stop_reason`` a
``finish_reason``, and usage counts cache reads and writes as prompt tokens.
"""

from __future__ import annotations

from typing import Any

import orjson

from ezlink.engine.generation_types import Delta, FinishReason, GenerationRequest, Usage
from ezlink.errors import InvalidRequestError

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
MAX_TEMPERATURE = 1.0
JSON_INSTRUCTION = "Answer with one JSON object only: no prose before or after it, no code fences."


def messages_body(
    request: GenerationRequest, upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    """The Messages API body for a chat request; InvalidRequestError naming what
    Anthropic cannot do."""
    _check_supported(request)
    system, messages = translate_messages(request.messages)
    instruction = _format_instruction(request.body.get("response_format"))
    if instruction:
        system = f"{system}\n\n{instruction}" if system else instruction
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": sampling.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if sampling.temperature is not None:
        body["temperature"] = min(sampling.temperature, MAX_TEMPERATURE)
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.stop:
        body["stop_sequences"] = list(sampling.stop)
    if request.stream:
        body["stream"] = True
    if request.user:
        body["metadata"] = {"user_id": request.user}
    tools = [translate_tool(tool) for tool in request.tools]
    choice = translate_tool_choice(
        request.body.get("tool_choice"), request.body.get("parallel_tool_calls")
    )
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _refused(what: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"This model's upstream (Anthropic Messages) {what}.", param=param)


def _check_supported(request: GenerationRequest) -> None:
    if request.kind != "chat":
        raise _refused("serves chat completions only: use /v1/chat/completions", "prompt")
    if request.n > 1:
        raise _refused("gives one choice per request: `n` must be 1", "n")
    if request.sampling.logprobs:
        raise _refused("gives no log probabilities", "logprobs")
    if "functions" in request.body or "function_call" in request.body:
        raise _refused("takes `tools`, not the legacy `functions`", "functions")


def _format_instruction(value: Any) -> str:
    """The system instruction standing in for response_format (Anthropic has none)."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return JSON_INSTRUCTION
    if kind == "json_schema":
        spec = value.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
            return f"{JSON_INSTRUCTION} It must match this JSON schema: {text}"
        return JSON_INSTRUCTION
    return ""


def translate_messages(
    messages: tuple[dict[str, Any], ...] | list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Anthropic messages): one message per run of a role."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        role = message.get("role")
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = content_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = content_blocks(message.get("content"), where)
            blocks += _tool_use_blocks(message.get("tool_calls"), where)
            role = "assistant"
        elif role == "tool":
            blocks = [_tool_result_block(message, where)]
            role = "user"
        else:
            raise _refused(f"takes `tool` messages, not `{role}`", f"{where}.role")
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """An OpenAI message's content as Anthropic blocks (empty text dropped: Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), f"{where}.content[{index}]"))
        else:
            raise _refused(f"takes no `{kind}` parts", f"{where}.content[{index}].type")
    return blocks


def image_block(image_url: Any, where: str) -> dict[str, Any]:
    """An image_url part as an image block: data: URLs inline (base64), http(s) by URL."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding == "base64" and media_type.startswith("image/") and data:
            source = {"type": "base64", "media_type": media_type, "data": data}
            return {"type": "image", "source": source}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequestError(
        "An image must be an http(s) URL or a base64 `data:image/...` URL.",
        param=f"{where}.image_url.url",
    )


def _tool_use_blocks(calls: Any, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, call in enumerate(calls or ()):
        function = call["function"]
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequestError(
                "Tool call arguments must be a JSON object.",
                param=f"{where}.tool_calls[{index}].function.arguments",
            )
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}
        )
    return blocks


def _tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if isinstance(content, str):
        block["content"] = content
    elif isinstance(content, list):
        block["content"] = content_blocks(content, where)
    return block


def translate_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool."""
    function = tool["function"]
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    parameters = function.get("parameters")
    out["input_schema"] = parameters if isinstance(parameters, dict) else {"type": "object"}
    return out


def translate_tool_choice(choice: Any, parallel: Any = None) -> dict[str, Any] | None:
    """OpenAI's tool_choice (and parallel_tool_calls) as Anthropic's tool_choice."""
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        out = {"type": "tool", "name": choice["function"]["name"]}
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def finish_reason(stop_reason: Any) -> FinishReason:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def parse_usage(usage: Any, base: Usage | None = None) -> Usage:
    """Anthropic's usage as ``Usage``: cache reads and writes are prompt tokens too.

    ``base`` is what the stream reported so far (message_start's input counts):
    a later usage object (message_delta) overrides only the fields it gives.
    """
    usage = usage if isinstance(usage, dict) else {}
    previous = base or Usage()
    fields = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    if any(name in usage for name in fields):
        cached = _count(usage.get("cache_read_input_tokens"))
        prompt = _count(usage.get("input_tokens")) + cached
        prompt += _count(usage.get("cache_creation_input_tokens"))
    else:
        prompt, cached = previous.prompt_tokens, previous.cached_tokens
    completion = (
        _count(usage["output_tokens"]) if "output_tokens" in usage else previous.completion_tokens
    )
    return Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


def tool_call(index: int, block: dict[str, Any], arguments: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def message_deltas(message: dict[str, Any]) -> list[Delta]:
    """A whole Messages answer as one Delta (choice 0)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(tool_call(len(calls), block, arguments))
    return [
        Delta(
            role="assistant",
            content="".join(texts) if texts or not calls else None,
            tool_calls=tuple(calls),
            reasoning_content="".join(thinking) if thinking else None,
            finish_reason=finish_reason(message.get("stop_reason")),
        )
    ]


class StreamTranslator:
    """Anthropic's stream events, one at a time, as Deltas (choice 0).

    The first Delta carries ``role: assistant``; a tool_use block's start is a
    tool call (index, id, name, empty arguments), its input_json_delta pieces
    are arguments at that index. ``usage`` is message_start's input counts,
    updated by message_delta's output counts.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.finished = False
        self._tool_index: dict[int, int] = {}
        self._started = False

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        """The Deltas of one event (ping, *_stop: none); errors are the caller's."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            model = message.get("model")
            self.model = model if isinstance(model, str) else None
            self.usage = parse_usage(message.get("usage"))
            return []
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta") or {})
        if kind == "message_delta":
            if "usage" in event:
                self.usage = parse_usage(event["usage"], self.usage)
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            self.finished = True
            return [self._delta(finish_reason=finish_reason(reason))]
        return []

    def _delta(self, **fields: Any) -> Delta:
        if not self._started:
            self._started = True
            fields["role"] = "assistant"
        return Delta(**fields)

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[Delta]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._delta(content=block["text"])]
        if kind == "tool_use":
            position = self._tool_index[index] = len(self._tool_index)
            return [self._delta(tool_calls=(tool_call(position, block, ""),))]
        return []

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[Delta]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._delta(content=delta["text"])]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._delta(reasoning_content=delta["thinking"])]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            piece = {
                "index": self._tool_index[index],
                "function": {"arguments": delta["partial_json"]},
            }
            return [self._delta(tool_calls=(piece,))]
        return []
