"""Claude behind a routed model: OpenAI chat in, Anthropic Messages out, and back,
against a real test upstream speaking Anthropic's API (``AnthropicUpstream``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
import pytest_asyncio

from ezlink.api.protocol.chat import parse_chat_request
from ezlink.catalog import build_models
from ezlink.config import Settings
from ezlink.engine.generation_types import CollectedChoice, Delta, Usage
from ezlink.errors import InvalidRequestError, UpstreamError
from ezlink.upstreams.routing import RoutedModel
from tests.support.anthropic_upstream import (
    API_KEY,
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    INPUT_TOKENS,
    REPLY_PREFIX,
    SECRET_IN_ERROR,
    TOOL_INPUT,
    TOOL_REPLY_PREFIX,
    AnthropicUpstream,
)
from tests.support.server import ServerProcess, write_config

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY_ENV = "EZLINK_TEST_ANTHROPIC_KEY"
FRONT_KEY = "sk-front-master-anthropic-0123456789"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[AnthropicUpstream]:
    with AnthropicUpstream() as server:
        yield server


def anthropic_upstream(name: str, upstream: AnthropicUpstream) -> dict[str, Any]:
    return {
        "name": name,
        "base_url": upstream.api_url,
        "api_key_env": KEY_ENV,
        "kind": "anthropic",
        "model": "claude-test",
        "timeout": 5,
        "first_token_timeout": 5,
        "idle_timeout": 5,
    }


def settings_for(upstream: AnthropicUpstream, routes: list[dict[str, Any]]) -> Settings:
    return Settings.model_validate(
        {
            "upstreams": [
                anthropic_upstream("claude", upstream),
                anthropic_upstream("claude-backup", upstream),
            ],
            "models": [
                {
                    "kind": "upstream",
                    "id": "claude",
                    "routes": routes,
                    "retry": {"retries": 0},
                    "timeout": 10,
                }
            ],
        }
    )


@pytest_asyncio.fixture(loop_scope="session")
async def claude(
    upstream: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RoutedModel]:
    """A routed model on one Anthropic upstream, built from Settings as the server builds it."""
    async with started(upstream, monkeypatch, [{"upstream": "claude"}]) as model:
        yield model


class started:
    """The first served model of the settings, started and stopped."""

    def __init__(
        self,
        upstream: AnthropicUpstream,
        monkeypatch: pytest.MonkeyPatch,
        routes: list[dict[str, Any]],
    ) -> None:
        monkeypatch.setenv(KEY_ENV, API_KEY)
        [model] = build_models(settings_for(upstream, routes))
        assert isinstance(model, RoutedModel)
        self.model = model

    async def __aenter__(self) -> RoutedModel:
        await self.model.start()
        return self.model

    async def __aexit__(self, *exc: object) -> None:
        await self.model.stop()


async def run(model: RoutedModel, **fields: Any) -> tuple[list[Delta], Usage, Any]:
    generation = model.generate(parse_chat_request({"model": "claude", **fields}))
    deltas: list[Delta] = []
    try:
        async for delta in generation:
            deltas.append(delta)
    finally:
        await generation.aclose()
    return deltas, generation.usage, generation


def collected(deltas: list[Delta]) -> CollectedChoice:
    """The one choice, with tool call pieces joined by index."""
    choice = CollectedChoice(index=0)
    for delta in deltas:
        choice.content += delta.content or ""
        choice.finish_reason = delta.finish_reason or choice.finish_reason
        for piece in delta.tool_calls:
            index = piece["index"]
            while len(choice.tool_calls) <= index:
                choice.tool_calls.append({"function": {"name": "", "arguments": ""}})
            call = choice.tool_calls[index]
            call["id"] = piece.get("id") or call.get("id")
            function = piece.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
    return choice


@pytest.mark.parametrize("stream", [False, True])
async def test_text_answers_whole_and_streamed(
    claude: RoutedModel, upstream: AnthropicUpstream, stream: bool
) -> None:
    deltas, usage, generation = await run(claude, messages=HELLO, stream=stream)
    assert deltas[0].role == "assistant"
    choice = collected(deltas)
    assert choice.content == f"{REPLY_PREFIX} Hello there"
    assert choice.finish_reason == "stop"
    if stream:
        assert len(deltas) > 2  # word by word, then the finish
    words = len(choice.content.split())
    assert usage == Usage(prompt_tokens=INPUT_TOKENS, completion_tokens=words)
    assert generation.served_model == "claude-test"
    call = upstream.calls[-1]
    assert call["path"] == "/v1/messages"
    assert call["headers"]["x-api-key"] == API_KEY
    assert call["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in call["headers"]
    assert call["body"]["max_tokens"] == 4096
    assert call["body"].get("stream", False) is stream


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip(
    claude: RoutedModel, upstream: AnthropicUpstream, stream: bool
) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    deltas, _, _ = await run(claude, messages=ask, tools=[WEATHER_TOOL], stream=stream)
    choice = collected(deltas)
    assert choice.finish_reason == "tool_calls"
    [call] = choice.tool_calls
    assert call["id"] == "toolu_01"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == TOOL_INPUT
    assert upstream.calls[-1]["body"]["tools"][0]["input_schema"]["type"] == "object"

    history = [
        *ask,
        {
            "role": "assistant",
            "content": choice.content or None,
            "tool_calls": [{**call, "type": "function"}],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"},
    ]
    deltas, _, _ = await run(claude, messages=history, tools=[WEATHER_TOOL], stream=stream)
    assert collected(deltas).content == f"{TOOL_REPLY_PREFIX} 18 degrees and sunny"
    sent = upstream.calls[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 degrees and sunny"}
    ]


async def test_images_reach_claude_as_image_blocks(claude: RoutedModel) -> None:
    content = [
        {"type": "text", "text": "Describe these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    deltas, _, _ = await run(claude, messages=[{"role": "user", "content": content}])
    assert collected(deltas).content == (
        f"[image base64 image/png] [image url https://example.com/cat.jpg] {REPLY_PREFIX} "
        "Describe these"
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_reasons_become_finish_reasons(claude: RoutedModel, stream: bool) -> None:
    deltas, usage, _ = await run(claude, messages=HELLO, max_tokens=2, stream=stream)
    assert collected(deltas).finish_reason == "length"
    assert collected(deltas).content == "Hello from"
    assert usage.completion_tokens == 2
    deltas, _, _ = await run(claude, messages=HELLO, stop=["said"], stream=stream)
    assert collected(deltas).finish_reason == "stop"
    assert collected(deltas).content == "Hello from Claude. You "


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_counts_cached_tokens(claude: RoutedModel, stream: bool) -> None:
    messages = [{"role": "system", "content": "A long cached prompt."}, *HELLO]
    deltas, usage, _ = await run(claude, messages=messages, stream=stream)
    assert usage.prompt_tokens == INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_WRITE_TOKENS
    assert usage.cached_tokens == CACHE_READ_TOKENS
    assert usage.completion_tokens == len(collected(deltas).content.split())
    assert not usage.counted_by_ezlink


@pytest.mark.parametrize("fault", ["error-429", "error-529"])
async def test_a_429_or_529_falls_back_to_the_next_route(
    upstream: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    routes = [
        {"upstream": "claude", "model": fault, "weight": 1},
        {"upstream": "claude-backup", "model": "claude-test", "weight": 0},
    ]
    before = len(upstream.calls_for(fault))
    async with started(upstream, monkeypatch, routes) as model:
        deltas, _, generation = await run(model, messages=HELLO, stream=True)
        endpoint = model.endpoints[0]
    assert collected(deltas).content == f"{REPLY_PREFIX} Hello there"
    assert generation.route.target == "claude-backup"
    assert len(upstream.calls_for(fault)) == before + 1
    # Both are retryable; the 429's Retry-After pauses the upstream for other requests.
    assert endpoint.name == "claude" and endpoint.breaker.snapshot().consecutive_failures == 1
    if fault == "error-429":
        assert endpoint.breaker.held_for() > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_400_is_the_clients_error_with_the_key_removed(
    upstream: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    routes = [
        {"upstream": "claude", "model": "error-400"},
        {"upstream": "claude-backup", "weight": 0},
    ]
    async with started(upstream, monkeypatch, routes) as model:
        with pytest.raises(InvalidRequestError) as caught:
            await run(model, messages=HELLO, stream=stream)
    assert caught.value.status_code == 400
    message = caught.value.message
    assert "prompt is too long" in message
    assert API_KEY not in message and SECRET_IN_ERROR not in message
    assert "docs.internal.example" not in message


async def test_an_error_event_mid_stream_is_an_upstream_error(
    upstream: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = [{"upstream": "claude", "model": "error-stream"}]
    received: list[Delta] = []
    async with started(upstream, monkeypatch, routes) as model:
        generation = model.generate(
            parse_chat_request({"model": "claude", "messages": HELLO, "stream": True})
        )
        with pytest.raises(UpstreamError) as caught:
            async for delta in generation:
                received.append(delta)
        await generation.aclose()
    assert received[0].content == REPLY_PREFIX.split()[0]
    assert "overloaded_error" in caught.value.message
    assert SECRET_IN_ERROR not in caught.value.message
    # Cut short: Anthropic's prompt count, ezlink's count of what arrived.
    assert generation.usage.prompt_tokens == INPUT_TOKENS
    assert generation.usage.counted_by_ezlink


async def test_an_error_event_before_any_content_falls_back(
    upstream: AnthropicUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = [
        {"upstream": "claude", "model": "error-stream-early"},
        {"upstream": "claude-backup", "weight": 0},
    ]
    async with started(upstream, monkeypatch, routes) as model:
        deltas, _, generation = await run(model, messages=HELLO, stream=True)
    assert collected(deltas).content == f"{REPLY_PREFIX} Hello there"
    assert generation.route.target == "claude-backup"


async def test_what_claude_cannot_do_is_a_400_before_any_call(
    claude: RoutedModel, upstream: AnthropicUpstream
) -> None:
    before = len(upstream.calls)
    with pytest.raises(InvalidRequestError) as caught:
        await run(claude, messages=HELLO, n=2)
    assert caught.value.param == "n"
    assert len(upstream.calls) == before


async def test_an_openai_client_talks_to_claude_through_ezlink(upstream: AnthropicUpstream) -> None:
    config = write_config(
        {
            "upstreams": [anthropic_upstream("claude", upstream)],
            "models": [{"kind": "upstream", "id": "claude", "routes": [{"upstream": "claude"}]}],
        }
    )
    env = {KEY_ENV: API_KEY}
    with ServerProcess(config, env=env, master_key=FRONT_KEY) as server:
        client = openai.AsyncOpenAI(base_url=server.api_url, api_key=FRONT_KEY, max_retries=0)
        whole = await client.chat.completions.create(model="claude", messages=HELLO)  # type: ignore[arg-type]
        assert whole.choices[0].message.content == f"{REPLY_PREFIX} Hello there"
        assert whole.choices[0].finish_reason == "stop"
        assert whole.usage is not None and whole.usage.prompt_tokens == INPUT_TOKENS
        stream = await client.chat.completions.create(
            model="claude",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == f"{REPLY_PREFIX} Hello there"
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == INPUT_TOKENS
        asked = await client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
        )
        assert asked.choices[0].finish_reason == "tool_calls"
        [call] = asked.choices[0].message.tool_calls or []
        function = call.model_dump()["function"]
        assert function["name"] == "get_weather"
        assert json.loads(function["arguments"]) == TOOL_INPUT
        with pytest.raises(openai.BadRequestError) as caught:
            await client.embeddings.create(model="claude", input="hi")
        assert "not embeddings" in str(caught.value)


async def test_a_stream_closed_early_counts_what_arrived(
    claude: RoutedModel, upstream: AnthropicUpstream
) -> None:
    messages = [{"role": "system", "content": "Cached."}, *HELLO]
    request = parse_chat_request({"model": "claude", "messages": messages, "stream": True})
    generation = claude.generate(request)
    first = await anext(aiter(generation))
    await generation.aclose()
    assert first.role == "assistant" and first.content == "Hello"
    # Anthropic's prompt count (message_start), ezlink's count of the rest.
    assert generation.usage.prompt_tokens == INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_WRITE_TOKENS
    assert generation.usage.cached_tokens == CACHE_READ_TOKENS
    assert generation.usage.completion_tokens >= 1
    assert generation.usage.counted_by_ezlink
