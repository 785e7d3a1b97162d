"""OpenAI chat ↔ Anthropic Messages translation, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from ezlink.api.protocol.chat import parse_chat_request
from ezlink.engine.generation_types import Delta, Usage
from ezlink.errors import InvalidRequestError
from ezlink.upstreams.anthropic_translate import (
    JSON_INSTRUCTION,
    StreamTranslator,
    finish_reason,
    message_deltas,
    messages_body,
    parse_usage,
    translate_tool_choice,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_for(**fields: Any) -> dict[str, Any]:
    request = parse_chat_request({"model": "claude", **fields})
    return messages_body(request, "claude-sonnet-4-5", 4096)


def test_a_plain_chat_becomes_a_messages_body() -> None:
    body = body_for(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hi"},
        ],
        temperature=0.5,
        top_p=0.9,
        stop="END",
        user="alice",
    )
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "alice"},
    }


def test_max_tokens_comes_from_the_request_then_the_default() -> None:
    hi = [{"role": "user", "content": "Hi"}]
    assert body_for(messages=hi, max_completion_tokens=7)["max_tokens"] == 7
    assert body_for(messages=hi, max_tokens=9)["max_tokens"] == 9
    assert body_for(messages=hi)["max_tokens"] == 4096


def test_temperature_is_clamped_to_anthropics_range() -> None:
    body = body_for(messages=[{"role": "user", "content": "Hi"}], temperature=1.7)
    assert body["temperature"] == 1.0


def test_stream_is_asked_for() -> None:
    body = body_for(messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert body["stream"] is True


def test_images_become_base64_or_url_sources() -> None:
    body = body_for(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_a_tool_round_trip_becomes_tool_use_and_merged_tool_results() -> None:
    body = body_for(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
            {"role": "user", "content": "Which is warmer?"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any] | None) -> None:
    assert translate_tool_choice(choice, parallel) == expected


def test_json_response_formats_become_a_system_instruction() -> None:
    hi = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    body = body_for(messages=hi, response_format={"type": "json_object"})
    assert body["system"] == f"Be brief.\n\n{JSON_INSTRUCTION}"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = body_for(
        messages=hi[1:],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )
    assert body["system"] == (
        f"{JSON_INSTRUCTION} It must match this JSON schema: "
        '{"properties":{"a":{"type":"integer"}},"type":"object"}'
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
def test_what_anthropic_cannot_do_is_a_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        body_for(messages=[{"role": "user", "content": "Hi"}], **fields)
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_unsupported_parts_and_bad_images_name_their_place() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequestError) as caught:
        body_for(messages=[{"role": "user", "content": [audio]}])
    assert caught.value.param == "messages[0].content[0].type"
    image = {"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}
    with pytest.raises(InvalidRequestError) as caught:
        body_for(messages=[{"role": "user", "content": [image]}])
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_a_whole_answer_with_text_and_a_tool_call() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    assert message_deltas(message) == [
        Delta(
            role="assistant",
            content="Let me check.",
            tool_calls=(
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
            ),
            finish_reason="tool_calls",
        )
    ]


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reasons(stop_reason: str | None, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    usage = parse_usage(
        {
            "input_tokens": 12,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "output_tokens": 7,
        }
    )
    assert usage == Usage(prompt_tokens=132, completion_tokens=7, cached_tokens=100)
    assert usage.to_openai() == {
        "prompt_tokens": 132,
        "completion_tokens": 7,
        "total_tokens": 139,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_a_stream_of_events_becomes_deltas() -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "model": "claude-sonnet-4-5",
                "usage": {"input_tokens": 12, "cache_read_input_tokens": 100, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    translator = StreamTranslator()
    deltas = [delta for event in events for delta in translator.feed(event)]
    assert deltas == [
        Delta(role="assistant", content="Hi"),
        Delta(
            tool_calls=(
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                },
            )
        ),
        Delta(tool_calls=({"index": 0, "function": {"arguments": '{"a": 1}'}},)),
        Delta(finish_reason="tool_calls"),
    ]
    assert translator.model == "claude-sonnet-4-5"
    assert translator.finished
    assert translator.usage == Usage(prompt_tokens=112, completion_tokens=9, cached_tokens=100)
