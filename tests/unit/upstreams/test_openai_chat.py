"""The OpenAI chat/completions client: the body sent, SSE parsing, usage, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from ezlink.config import UpstreamConfig
from ezlink.engine.generation_types import Delta, GenerationRequest
from ezlink.engine.token_counting import (
    count_chat_prompt,
    count_output,
    count_text,
    encoding_for,
    o200k,
)
from ezlink.errors import InvalidRequestError, PayloadTooLargeError, UpstreamError
from ezlink.upstreams.http import UpstreamCallFailed, UpstreamConnection, UpstreamUnreachable
from ezlink.upstreams.openai_chat import OpenAIChatClient, OpenAIGeneration
from ezlink.upstreams.openai_wire import parse_usage, upstream_body
from ezlink.upstreams.providers import generation_client

KEY = "sk-live-upstream-key-0123456789"
MESSAGES = ({"role": "user", "content": "hello big world"},)


def chat_request(stream: bool = True, **body: Any) -> GenerationRequest:
    full = {"model": "public-name", "messages": list(MESSAGES), "stream": stream, **body}
    return GenerationRequest(
        kind="chat", model="public-name", body=full, messages=MESSAGES, stream=stream
    )


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return "data: " + json.dumps({"model": "gpt-4o-2024", "choices": [choice], **extra}) + "\n\n"


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }


class Pieces(httpx.AsyncByteStream):
    """A body sent in pieces of `size` bytes, as a network would cut it."""

    def __init__(self, body: bytes, size: int) -> None:
        self.body, self.size = body, size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.size):
            yield self.body[start : start + self.size]


Handler = Callable[[httpx.Request], httpx.Response]


def sse(text: str, size: int = 7) -> httpx.Response:
    headers = {"content-type": "text/event-stream"}
    return httpx.Response(200, headers=headers, stream=Pieces(text.encode(), size))


async def client_for(handler: Handler, **config: Any) -> OpenAIChatClient:
    settings = UpstreamConfig(
        name="up", base_url="http://upstream.test/v1", api_key_env="K", **config
    )
    connection = UpstreamConnection(settings, environ={"K": KEY})
    # The real pooled client's headers, over a transport that answers in-process.
    connection._client = httpx.AsyncClient(
        base_url="http://upstream.test/v1/",
        headers=connection._headers(),
        transport=httpx.MockTransport(handler),
    )
    return OpenAIChatClient(connection)


async def run(
    handler: Handler, request: GenerationRequest, model: str = "gpt-4o"
) -> tuple[list[Delta], OpenAIGeneration]:
    client = await client_for(handler)
    generation = client.generate(request, model)
    return [delta async for delta in generation], generation


def test_the_body_is_the_clients_with_the_upstream_model_and_usage_asked() -> None:
    request = chat_request(vendor_field={"x": 1}, stream_options={"keep": True})
    body = upstream_body(request, "gpt-4o")
    assert body["model"] == "gpt-4o" and body["vendor_field"] == {"x": 1}
    assert body["stream_options"] == {"keep": True, "include_usage": True}
    assert request.body["model"] == "public-name"  # the client's body is not changed
    assert "stream_options" not in upstream_body(chat_request(stream=False), "m")


def test_the_factory_picks_the_client_by_kind() -> None:
    for kind in ("openai", "other"):
        config = UpstreamConfig(name="u", base_url="http://u.test/v1", kind=kind)
        assert isinstance(generation_client(UpstreamConnection(config)), OpenAIChatClient)


@pytest.mark.parametrize("size", [1, 5, 64, 4096])
async def test_a_stream_cut_anywhere_parses_to_the_same_deltas(size: int) -> None:
    text = (
        ": keep-alive\n\n"
        + chunk({"role": "assistant", "content": ""})
        + chunk({"content": "héllo "}).replace("\n\n", "\r\n\r\n")
        + chunk({"reasoning_content": "think"})
        + chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}
        )
        + chunk(finish="tool_calls", logprobs=None)
        + "data: "
        + json.dumps({"choices": [], "usage": usage(10, 5)})
        + "\n\n"
        + "data: [DONE]\n\n"
    )
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return sse(text, size)

    deltas, generation = await run(handler, chat_request())
    assert deltas == [
        Delta(role="assistant", content=""),
        Delta(content="héllo "),
        Delta(reasoning_content="think"),
        Delta(tool_calls=({"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}},)),
        Delta(finish_reason="tool_calls"),
    ]
    assert generation.served_model == "gpt-4o-2024"
    assert (generation.usage.prompt_tokens, generation.usage.completion_tokens) == (10, 5)
    assert (generation.usage.cached_tokens, generation.usage.reasoning_tokens) == (4, 1)
    assert not generation.usage.counted_by_ezlink
    assert sent[0].url.path == "/v1/chat/completions"
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"


async def test_usage_in_every_chunk_is_taken_once_not_summed() -> None:
    text = (
        "".join(chunk({"content": f"w{n} "}, usage=usage(10, n + 1)) for n in range(4))
        + chunk(finish="stop", usage=usage(10, 4))
        + "data: [DONE]\n\n"
    )
    _, generation = await run(lambda _: sse(text), chat_request())
    assert (generation.usage.prompt_tokens, generation.usage.completion_tokens) == (10, 4)


async def test_without_usage_ezlink_counts_prompt_and_output() -> None:
    text = (
        chunk({"content": "Hello there, "})
        + chunk({"content": "friend."}, "stop")
        + "data: [DONE]\n\n"
    )
    _, generation = await run(lambda _: sse(text), chat_request())
    assert generation.usage.counted_by_ezlink
    assert generation.usage.prompt_tokens == count_chat_prompt("gpt-4o", MESSAGES)
    assert generation.usage.completion_tokens == count_output("gpt-4o", ["Hello there, friend."])


async def test_a_whole_answer_is_one_delta_per_choice_and_kept_as_sent() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    answer = {
        "model": "gpt-4o-2024",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "refusal": None},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            },
        ],
        "usage": usage(7, 3),
    }
    deltas, generation = await run(
        lambda _: httpx.Response(200, json=answer), chat_request(stream=False)
    )
    assert deltas == [
        Delta(choice=0, role="assistant", content="hi", finish_reason="stop"),
        Delta(
            choice=1,
            role="assistant",
            tool_calls=({"index": 0, **call},),
            finish_reason="tool_calls",
        ),
    ]
    assert generation.response == answer
    assert generation.usage.completion_tokens == 3


async def test_legacy_completions_go_to_completions_and_read_text() -> None:
    body = {"model": "m", "prompt": "say it", "stream": True}
    request = GenerationRequest(
        kind="completion", model="m", body=body, prompt="say it", stream=True
    )
    text = 'data: {"choices": [{"index": 0, "text": "it", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    paths: list[str] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        paths.append(sent.url.path)
        return sse(text)

    deltas, generation = await run(handler, request, model="gpt-3.5-turbo-instruct")
    assert paths == ["/v1/completions"] and deltas == [Delta(content="it", finish_reason="stop")]
    assert generation.usage.prompt_tokens == count_text(
        "say it", encoding_for("gpt-3.5-turbo-instruct")
    )


async def test_a_client_error_is_relayed_sanitized() -> None:
    message = f"Bad input (key {KEY}, http://admin:pw@internal.example/v1)\nTraceback (most recent call last):\n x"

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": {"message": message, "param": "messages", "code": "bad"}}
        )

    with pytest.raises(InvalidRequestError) as raised:
        await run(handler, chat_request())
    text = raised.value.message
    assert raised.value.status_code == 400 and raised.value.param == "messages"
    assert KEY not in text and "hunter" not in text and "internal.example" not in text
    assert "Traceback" not in text and text.startswith("Bad input")


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after"),
    [(429, True, 2.0), (500, True, None), (401, False, None), (404, False, None)],
)
async def test_upstream_failures_are_classified(
    status: int, retryable: bool, retry_after: float | None
) -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"retry-after": "2"} if retry_after else {}, json={})

    with pytest.raises(UpstreamCallFailed) as raised:
        await run(handler, chat_request())
    assert (raised.value.status, raised.value.retryable, raised.value.retry_after) == (
        status,
        retryable,
        retry_after,
    )


async def test_a_413_is_the_clients() -> None:
    with pytest.raises(PayloadTooLargeError):
        await run(
            lambda _: httpx.Response(413, json={"error": {"message": "too big"}}), chat_request()
        )


async def test_no_connection_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(UpstreamUnreachable):
        await run(handler, chat_request())


async def test_an_error_after_the_first_delta_is_raised_from_iteration_sanitized() -> None:
    error = {"error": {"message": f"overloaded, key {KEY}"}}
    text = chunk({"content": "a"}) + "data: " + json.dumps(error) + "\n\n"
    client = await client_for(lambda _: sse(text))
    generation = client.generate(chat_request(), "gpt-4o")
    deltas = aiter(generation)
    assert (await anext(deltas)).content == "a"
    with pytest.raises(UpstreamError) as raised:
        await anext(deltas)
    assert "overloaded" in raised.value.message and KEY not in raised.value.message
    assert generation.usage.counted_by_ezlink and generation.usage.completion_tokens == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('data: {"choices": [\n\n', "not valid JSON"),
        (chunk({"content": "cut"}), "ended before its last chunk"),
    ],
)
async def test_broken_streams_are_failed_calls(text: str, reason: str) -> None:
    with pytest.raises(UpstreamCallFailed) as raised:
        await run(lambda _: sse(text), chat_request())
    assert reason in raised.value.reason


async def test_a_stream_answered_whole_is_read_whole() -> None:
    answer = {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}
    deltas, _ = await run(lambda _: httpx.Response(200, json=answer), chat_request())
    assert deltas == [Delta(content="hi", finish_reason="stop")]


def test_usage_objects_are_read_defensively() -> None:
    assert parse_usage(None) is None and parse_usage({"completion_tokens": 3}) is None
    parsed = parse_usage(
        {"prompt_tokens": 5, "completion_tokens": "x", "prompt_tokens_details": None}
    )
    assert parsed is not None and (parsed.prompt_tokens, parsed.completion_tokens) == (5, 0)


def test_the_encoding_follows_the_model_family() -> None:
    for name in ("gpt-4o-mini", "o1-preview", "o3-mini", "gpt-4.1-nano", "gpt-5", "openai/gpt-4o"):
        assert encoding_for(name).name == "o200k_base", name
    for name in ("gpt-4", "gpt-3.5-turbo", "llama-3-8b", ""):
        assert encoding_for(name).name == "cl100k_base", name


def test_chat_prompts_count_openais_overheads() -> None:
    # The cookbook's example: 3 per message, 1 per name, 3 to prime the reply.
    messages = [
        {"role": "system", "content": "hi"},
        {"role": "user", "name": "bob", "content": "hello world"},
    ]
    o200k_tokens = [count_text(t, o200k()) for t in ("system", "hi", "user", "bob", "hello world")]
    assert count_chat_prompt("gpt-4o", messages) == 3 + 3 + 3 + 1 + sum(o200k_tokens)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City"}},
            },
        },
    }
    with_tool = count_chat_prompt("gpt-4o", messages, [tool])
    expected_tool = (
        7
        + count_text("get_weather:Weather", o200k())
        + 3
        + 3
        + count_text("city:string:City", o200k())
        + 12
    )
    assert with_tool - count_chat_prompt("gpt-4o", messages) == expected_tool
    calls = [
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}
    ]
    assert count_chat_prompt("gpt-4o", calls) == 3 + 3 + sum(
        count_text(t, o200k()) for t in ("assistant", "f", '{"a": 1}')
    )
