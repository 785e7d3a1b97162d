"""OpenAI's chat completions and legacy completions: parsing requests.

What is certain is checked here, before any model or upstream is asked, so
that a malformed request never costs an upstream call (one-api #1337): the
messages (present, non-empty, known roles, content shapes), `n`, token
limits, sampling ranges, `stream` and its options, tools, response_format.
Each rejection is a 400 naming its `param`. Fields ezlink does not know stay
in ``GenerationRequest.body`` and reach an OpenAI-kind upstream untouched.
"""

from __future__ import annotations

from typing import Any

from ezlink.api.protocol.common import optional_str, short_repr
from ezlink.engine.generation_types import GenerationKind, GenerationRequest, SamplingParams
from ezlink.errors import InvalidRequestError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Content part types each role may send (OpenAI's chat completions reference).
PART_TYPES = {
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
}
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})
MAX_N = 128
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise InvalidRequestError(message, param=param)


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass: excluded


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    _require(
        isinstance(model, str) and bool(model),
        "Missing required parameter: `model` (a non-empty string).",
        "model",
    )
    assert isinstance(model, str)
    return model


def _check_content(role: str, content: object, param: str, *, may_be_null: bool) -> None:
    if content is None:
        _require(may_be_null, f"`{param}` is required for a `{role}` message.", param)
        return
    if isinstance(content, str):
        return
    _require(
        isinstance(content, list) and bool(content),
        f"`{param}` must be a string or a non-empty array of content parts.",
        param,
    )
    assert isinstance(content, list)
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        _require(isinstance(part, dict), f"`{where}` must be an object.", where)
        kind = part.get("type")
        _require(
            isinstance(kind, str) and kind in PART_TYPES[role],
            f"`{where}.type` must be one of {sorted(PART_TYPES[role])} for a `{role}` "
            f"message; got {short_repr(kind)}.",
            f"{where}.type",
        )
        if kind == "text":
            _require(isinstance(part.get("text"), str), f"`{where}.text` must be a string.", where)
        elif kind == "image_url":
            image = part.get("image_url")
            _require(
                isinstance(image, dict) and isinstance(image.get("url"), str),
                f"`{where}.image_url.url` must be a string.",
                where,
            )
        elif kind == "input_audio":
            audio = part.get("input_audio")
            _require(
                isinstance(audio, dict) and isinstance(audio.get("data"), str),
                f"`{where}.input_audio.data` must be a base64 string.",
                where,
            )


def _check_tool_calls(calls: object, param: str) -> None:
    _require(isinstance(calls, list), f"`{param}` must be an array.", param)
    assert isinstance(calls, list)
    for index, call in enumerate(calls):
        where = f"{param}[{index}]"
        _require(
            isinstance(call, dict)
            and isinstance(call.get("id"), str)
            and isinstance(call.get("function"), dict)
            and isinstance(call["function"].get("name"), str),
            f"`{where}` must be an object with an `id` and a `function` with a `name`.",
            where,
        )


def parse_messages(value: object) -> tuple[dict[str, Any], ...]:
    """The messages, each checked for its role and the shape of its content."""
    _require(value is not None, "Missing required parameter: `messages`.", "messages")
    _require(
        isinstance(value, list) and bool(value),
        "`messages` must be a non-empty array of message objects.",
        "messages",
    )
    assert isinstance(value, list)
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        _require(isinstance(message, dict), f"`{where}` must be an object.", where)
        role = message.get("role")
        _require(
            role is not None, f"Missing required parameter: `{where}.role`.", f"{where}.role"
        )
        _require(
            isinstance(role, str) and role in ROLES,
            f"`{where}.role` must be one of {sorted(ROLES)}; got {short_repr(role)}.",
            f"{where}.role",
        )
        assert isinstance(role, str)
        has_calls = message.get("tool_calls") is not None or message.get("function_call")
        _check_content(
            role,
            message.get("content"),
            f"{where}.content",
            may_be_null=role == "assistant" and bool(has_calls or "refusal" in message),
        )
        if message.get("tool_calls") is not None:
            _require(role == "assistant", "Only assistant messages have `tool_calls`.", where)
            _check_tool_calls(message["tool_calls"], f"{where}.tool_calls")
        if role == "tool":
            _require(
                isinstance(message.get("tool_call_id"), str),
                f"`{where}.tool_call_id` is required for a `tool` message.",
                f"{where}.tool_call_id",
            )
        name = message.get("name")
        _require(name is None or isinstance(name, str), f"`{where}.name` must be a string.", where)
    return tuple(value)


def _optional_number(
    data: dict[str, Any], name: str, low: float, high: float
) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    _require(
        _is_number(value) and low <= value <= high,
        f"`{name}` must be a number between {low:g} and {high:g}; got {short_repr(value)}.",
        name,
    )
    return float(value)


def _optional_int(data: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    within = _is_int(value) and value >= low and (high is None or value <= high)
    bounds = f">= {low}" if high is None else f"between {low} and {high}"
    _require(within, f"`{name}` must be an integer {bounds}; got {short_repr(value)}.", name)
    assert isinstance(value, int)
    return value


def _optional_bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    _require(
        value is None or type(value) is bool,
        f"`{name}` must be a boolean; got {short_repr(value)}.",
        name,
    )
    return value if isinstance(value, bool) else None


def _stop(data: dict[str, Any]) -> tuple[str, ...]:
    stop = data.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    _require(
        isinstance(stop, list)
        and len(stop) <= MAX_STOP
        and all(isinstance(item, str) and item for item in stop),
        f"`stop` must be a string or an array of up to {MAX_STOP} non-empty strings.",
        "stop",
    )
    assert isinstance(stop, list)
    return tuple(stop)


def _response_format(data: dict[str, Any]) -> bool:
    """Whether the output must be a JSON object (json_object or json_schema)."""
    value = data.get("response_format")
    if value is None:
        return False
    kind = value.get("type") if isinstance(value, dict) else None
    _require(
        isinstance(kind, str) and kind in RESPONSE_FORMATS,
        f"`response_format.type` must be one of {sorted(RESPONSE_FORMATS)}.",
        "response_format",
    )
    if kind == "json_schema":
        schema = value.get("json_schema") if isinstance(value, dict) else None
        _require(
            isinstance(schema, dict) and isinstance(schema.get("name"), str),
            "`response_format.json_schema` must be an object with a `name`.",
            "response_format.json_schema",
        )
    return kind != "text"


def _tools(data: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    tools = data.get("tools")
    if tools is None:
        return ()
    _require(isinstance(tools, list), "`tools` must be an array.", "tools")
    assert isinstance(tools, list)
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        _require(
            isinstance(tool, dict)
            and tool.get("type", "function") == "function"
            and isinstance(function, dict)
            and isinstance(function.get("name"), str)
            and bool(function["name"]),
            f"`tools[{index}]` must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.",
            f"tools[{index}]",
        )
    choice = data.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        _require(
            choice in TOOL_CHOICES,
            f"`tool_choice` must be one of {sorted(TOOL_CHOICES)} or a named function.",
            "tool_choice",
        )
    return tuple(tools)


def _sampling(data: dict[str, Any], *, logprobs: bool, top_logprobs: int | None) -> SamplingParams:
    max_tokens = _optional_int(data, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(data, "max_tokens", 1)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_optional_number(data, "temperature", 0.0, 2.0),
        top_p=_optional_number(data, "top_p", 0.0, 1.0),
        seed=_optional_int(data, "seed", -(2**63)),
        stop=_stop(data),
        presence_penalty=_optional_number(data, "presence_penalty", -2.0, 2.0),
        frequency_penalty=_optional_number(data, "frequency_penalty", -2.0, 2.0),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        json_object=_response_format(data),
    )


def _stream(data: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = bool(_optional_bool(data, "stream"))
    options = data.get("stream_options")
    if options is None:
        return stream, False
    _require(isinstance(options, dict), "`stream_options` must be an object.", "stream_options")
    _require(stream, "`stream_options` is only allowed when `stream` is true.", "stream_options")
    assert isinstance(options, dict)
    include = options.get("include_usage")
    _require(
        include is None or type(include) is bool,
        "`stream_options.include_usage` must be a boolean.",
        "stream_options.include_usage",
    )
    return stream, bool(include)


def _common(data: dict[str, Any], kind: GenerationKind) -> dict[str, Any]:
    """The fields chat and legacy completions share."""
    stream, include_usage = _stream(data)
    metadata = data.get("metadata")
    _require(
        metadata is None
        or (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())),
        "`metadata` must be an object of string values.",
        "metadata",
    )
    return {
        "kind": kind,
        "model": _model(data),
        "body": data,
        "n": _optional_int(data, "n", 1, MAX_N) or 1,
        "stream": stream,
        "include_usage": include_usage,
        "user": optional_str(data, "user"),
    }


def parse_chat_request(data: dict[str, Any]) -> GenerationRequest:
    """A chat completions request body → a validated GenerationRequest."""
    common = _common(data, "chat")
    messages = parse_messages(data.get("messages"))
    logprobs = bool(_optional_bool(data, "logprobs"))
    top_logprobs = _optional_int(data, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    _require(
        top_logprobs is None or logprobs,
        "`top_logprobs` needs `logprobs` set to true.",
        "top_logprobs",
    )
    _optional_bool(data, "parallel_tool_calls")
    optional_str(data, "reasoning_effort")
    functions = data.get("functions")
    _require(
        functions is None or isinstance(functions, list), "`functions` must be an array.", "functions"
    )
    return GenerationRequest(
        messages=messages,
        sampling=_sampling(data, logprobs=logprobs, top_logprobs=top_logprobs),
        tools=_tools(data),
        **common,
    )


def parse_completion_request(data: dict[str, Any]) -> GenerationRequest:
    """A legacy completions request body → a validated GenerationRequest."""
    common = _common(data, "completion")
    prompt = data.get("prompt")
    _require(prompt is not None, "Missing required parameter: `prompt`.", "prompt")
    text: str | None = None
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        # One prompt in an array is the same request; several are a batch,
        # which only an upstream can answer (the body goes as it is).
        text = prompt[0] if len(prompt) == 1 else None
    else:
        _require(
            isinstance(prompt, list)
            and bool(prompt)
            and (
                all(_is_int(t) and t >= 0 for t in prompt)
                or all(
                    isinstance(p, list) and p and all(_is_int(t) and t >= 0 for t in p)
                    for p in prompt
                )
            ),
            "`prompt` must be a string, an array of strings, or token ids.",
            "prompt",
        )
    logprobs = _optional_int(data, "logprobs", 0, 5)
    _optional_bool(data, "echo")
    optional_str(data, "suffix")
    _optional_int(data, "best_of", 1, 20)
    return GenerationRequest(
        prompt=text,
        sampling=_sampling(data, logprobs=logprobs is not None, top_logprobs=logprobs),
        **common,
    )
