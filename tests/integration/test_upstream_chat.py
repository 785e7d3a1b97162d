"""Chat and completions through RoutedModel.generate against a real test upstream
(tests/support/chat_upstream.py): streams, tools, exact usage, retries and
fallback before the first delta, failures after it, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ezlink.config import (
    BreakerConfig,
    RetryConfig,
    RouteConfig,
    RoutedModelConfig,
    UpstreamConfig,
)
from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.engine.token_counting import count_chat_prompt, count_output
from ezlink.engine.types import CHAT, COMPLETIONS, EMBEDDINGS, ModelCard
from ezlink.errors import (
    InvalidRequestError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ezlink.upstreams.endpoint import build_endpoints
from ezlink.upstreams.routing import RoutedModel
from tests.support.chat_upstream import (
    CACHED_TOKENS,
    REASONING_TOKENS,
    SECRET_IN_ERROR,
    TOOL_ARGUMENT_PIECES,
    ChatUpstream,
    usage_for,
)

TEXT = "hello big wide world"
KEY = "sk-chat-upstream-key-0123456789"
names = itertools.count()
# The async fixtures run in the session's loop (pyproject): so do these tests.
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ChatUpstream]:
    with ChatUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_UPSTREAM_KEY", KEY)


def routed(
    upstream: ChatUpstream,
    *models: str,
    retries: int = 0,
    threshold: int = 5,
    weights: tuple[float, ...] = (),
    **settings: Any,
) -> RoutedModel:
    """A routed model with one route per upstream model name, the first preferred."""
    configs = [
        UpstreamConfig(
            name=f"up{next(names)}-{model}",
            base_url=upstream.api_url,
            api_key_env="CHAT_UPSTREAM_KEY",
            breaker=BreakerConfig(failure_threshold=threshold, cooldown=600),
            **settings,
        )
        for model in models
    ]
    weights = weights or (1.0,) + (0.0,) * (len(models) - 1)
    config = RoutedModelConfig(
        kind="upstream",
        id="chat-model",
        routes=[
            RouteConfig(upstream=c.name, model=model, weight=w)
            for c, model, w in zip(configs, models, weights, strict=True)
        ],
        retry=RetryConfig(
            retries=retries, backoff_base=0.01, backoff_max=0.02, max_retry_after=0.5
        ),
        timeout=10,
    )
    return RoutedModel(config, build_endpoints(configs), {})


def chat(text: str = TEXT, stream: bool = True, **body: Any) -> GenerationRequest:
    messages = ({"role": "user", "content": text},)
    full = {"model": "chat-model", "messages": list(messages), "stream": stream, **body}
    return GenerationRequest(
        kind="chat", model="chat-model", body=full, messages=messages, stream=stream
    )


async def collect(model: RoutedModel, request: GenerationRequest) -> tuple[list[Delta], Usage]:
    generation = model.generate(request)
    deltas = [delta async for delta in generation]
    return deltas, generation.usage


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.content or "" for d in deltas)


@pytest.fixture
async def started() -> AsyncIterator[list[RoutedModel]]:
    models: list[RoutedModel] = []
    yield models
    for model in models:
        await model.stop()


async def start(started: list[RoutedModel], model: RoutedModel) -> RoutedModel:
    await model.start()
    started.append(model)
    return model


def exact_usage(request: GenerationRequest, completion: int) -> Usage:
    sent = {**request.body, "model": "x"}
    expected = usage_for(sent, completion)
    return Usage(
        prompt_tokens=expected["prompt_tokens"],
        completion_tokens=completion,
        cached_tokens=CACHED_TOKENS,
        reasoning_tokens=REASONING_TOKENS,
    )


async def test_a_routed_model_serves_every_family(upstream: ChatUpstream) -> None:
    model = routed(upstream, "echo")
    assert isinstance(model.card, ModelCard)
    assert {EMBEDDINGS, CHAT, COMPLETIONS} <= model.card.capabilities


async def test_a_stream_relays_the_text_with_the_upstreams_exact_usage(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "echo"))
    request = chat(vendor_extension={"keep": ["me"]}, temperature=0.2)
    generation = model.generate(request)
    deltas = [delta async for delta in generation]
    assert deltas[0].role == "assistant" and text_of(deltas) == TEXT
    assert deltas[-1].finish_reason == "stop"
    assert generation.usage == exact_usage(request, completion=len(TEXT.split()) + 2)
    assert generation.served_model == "echo-served"
    (received,) = upstream.requests_for("echo")[-1:]
    body = received["body"]
    assert body["model"] == "echo" and body["vendor_extension"] == {"keep": ["me"]}
    assert body["temperature"] == 0.2 and body["stream_options"] == {"include_usage": True}
    assert received["headers"]["authorization"] == f"Bearer {KEY}"
    assert received["path"] == "/v1/chat/completions"


async def test_a_whole_answer_is_one_delta_and_the_raw_response(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "echo"))
    request = chat(stream=False)
    generation = model.generate(request)
    deltas = [delta async for delta in generation]
    assert deltas == [Delta(role="assistant", content=TEXT, finish_reason="stop")]
    assert generation.usage == exact_usage(request, completion=len(TEXT.split()))
    assert generation.response is not None
    assert generation.response["choices"][0]["message"]["refusal"] is None


async def test_legacy_completions_stream(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "echo"))
    body = {"model": "chat-model", "prompt": "one two three", "stream": True}
    request = GenerationRequest(
        kind="completion", model="chat-model", body=body, prompt="one two three", stream=True
    )
    deltas, usage = await collect(model, request)
    assert text_of(deltas) == "one two three" and not usage.counted_by_ezlink
    assert upstream.requests_for("echo")[-1]["path"] == "/v1/completions"


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_calls_pass_through(
    upstream: ChatUpstream, started: list[RoutedModel], stream: bool
) -> None:
    model = await start(started, routed(upstream, "tool-call"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    deltas, _ = await collect(model, chat(stream=stream, tools=tools))
    calls = [call for delta in deltas for call in delta.tool_calls]
    assert {call["index"] for call in calls} == {0}
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"] == "call_1"
    arguments = "".join(call["function"].get("arguments", "") for call in calls)
    assert arguments == "".join(TOOL_ARGUMENT_PIECES)
    assert deltas[-1].finish_reason == "tool_calls"
    assert upstream.requests_for("tool-call")[-1]["body"]["tools"] == tools


async def test_usage_repeated_in_every_chunk_is_not_summed(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "usage-every-chunk"))
    request = chat()
    _, usage = await collect(model, request)
    assert usage == exact_usage(request, completion=len(TEXT.split()) + 2)


async def test_without_usage_ezlink_counts(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "no-usage"))
    request = chat()
    deltas, usage = await collect(model, request)
    assert usage.counted_by_ezlink
    assert usage.prompt_tokens == count_chat_prompt("no-usage", request.messages)
    assert usage.completion_tokens == count_output("no-usage", [text_of(deltas)])


async def test_429_with_retry_after_falls_back_and_pauses_the_upstream(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "429-retry-after", "echo", retries=2))
    before = len(upstream.requests_for("429-retry-after"))
    deltas, _ = await collect(model, chat())
    assert text_of(deltas) == TEXT
    # Retry-After (1 s) is past max_retry_after (0.5 s): no retry, straight to the fallback.
    assert len(upstream.requests_for("429-retry-after")) == before + 1
    paused = model.endpoints[0]
    assert paused.breaker.held_for() > 0
    # The next request skips the paused upstream.
    deltas, _ = await collect(model, chat())
    assert text_of(deltas) == TEXT and len(upstream.requests_for("429-retry-after")) == before + 1


async def test_500_is_retried_then_falls_back(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "500", "echo", retries=1))
    before = len(upstream.requests_for("500"))
    deltas, _ = await collect(model, chat())
    assert text_of(deltas) == TEXT
    assert len(upstream.requests_for("500")) == before + 2
    failing, healthy = model.endpoints
    assert failing.failures == 2 and failing.last_error == "HTTP 500"
    assert healthy.calls == 1 and healthy.failures == 0


async def test_a_malformed_first_chunk_falls_back(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "malformed-chunk", "echo"))
    deltas, _ = await collect(model, chat())
    assert text_of(deltas) == TEXT
    assert model.endpoints[0].failures == 1


async def test_a_client_error_ends_the_request_sanitized(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "400", "echo"))
    before = len(upstream.requests_for("echo"))
    with pytest.raises(InvalidRequestError) as raised:
        await collect(model, chat())
    assert raised.value.status_code == 400 and raised.value.code == "bad_messages"
    assert SECRET_IN_ERROR not in raised.value.message and "hunter2" not in raised.value.message
    assert "Traceback" not in raised.value.message
    assert len(upstream.requests_for("echo")) == before  # no fallback for the client's error
    assert model.endpoints[0].breaker.snapshot().consecutive_failures == 0


@pytest.mark.parametrize("fault", ["drop-mid-stream", "malformed-mid-stream", "error-mid-stream"])
async def test_a_failure_after_the_first_delta_ends_the_stream_and_counts(
    upstream: ChatUpstream, started: list[RoutedModel], fault: str
) -> None:
    model = await start(started, routed(upstream, fault, "echo", threshold=1))
    generation = model.generate(chat())
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as raised:
        async for delta in generation:
            received.append(delta)
    assert text_of(received) == "hello "  # two chunks: the role, then one word
    assert SECRET_IN_ERROR not in raised.value.message
    endpoint = model.endpoints[0]
    assert endpoint.failures == 1 and endpoint.breaker.state == "open"
    assert endpoint.in_flight == 0
    assert generation.usage.counted_by_ezlink
    assert generation.usage.completion_tokens == count_output(fault, ["hello "])
    assert model.endpoints[1].calls == 0  # no fallback once the client has deltas


async def test_no_first_token_in_time_is_a_timeout(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(
        started,
        routed(upstream, "slow-first-token", first_token_timeout=0.3, headers={"x-delay": "5"}),
    )
    began = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as raised:
        await collect(model, chat())
    assert time.monotonic() - began < 2
    assert "first chunk within 0.3s" in raised.value.message


async def test_a_stalled_stream_times_out_after_its_deltas(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "stall-mid-stream", idle_timeout=0.3))
    generation = model.generate(chat())
    received: list[Delta] = []
    with pytest.raises(UpstreamTimeoutError) as raised:
        async for delta in generation:
            received.append(delta)
    assert text_of(received) == "hello " and "no chunk for 0.3s" in raised.value.message
    record = upstream.requests_for("stall-mid-stream")[-1]
    assert await asyncio.to_thread(upstream.wait_for_disconnect, record) is not None


async def test_aclose_disconnects_the_upstream_at_once_and_counts_what_was_received(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "slow-stream"))
    request = chat(" ".join(f"w{n}" for n in range(40)))
    generation = model.generate(request)
    deltas = aiter(generation)
    first, second = await anext(deltas), await anext(deltas)
    assert first.role == "assistant" and second.content == "w0 "
    record = upstream.requests_for("slow-stream")[-1]
    closed_at = time.monotonic()
    await generation.aclose()
    seen = await asyncio.to_thread(upstream.wait_for_disconnect, record)
    assert seen is not None
    latency = seen - closed_at
    print(f"upstream saw the disconnect {latency * 1000:.1f} ms after aclose()")
    assert latency < 0.1
    assert generation.usage.counted_by_ezlink
    assert generation.usage.completion_tokens == count_output("slow-stream", ["w0 "])
    assert generation.usage.prompt_tokens == count_chat_prompt("slow-stream", request.messages)
    assert model.endpoints[0].in_flight == 0 and model.endpoints[0].failures == 0


async def test_an_open_circuit_is_skipped(
    upstream: ChatUpstream, started: list[RoutedModel]
) -> None:
    model = await start(started, routed(upstream, "500", "echo", threshold=1))
    await collect(model, chat())  # opens the circuit of the first
    before = len(upstream.requests_for("500"))
    deltas, _ = await collect(model, chat())
    assert text_of(deltas) == TEXT and len(upstream.requests_for("500")) == before


class LocalGenerator:
    """A local model that generates a fixed answer."""

    def __init__(self) -> None:
        self.card = ModelCard(
            id="local-gen",
            public_names=("local-gen",),
            owned_by="t",
            created=0,
            capabilities=frozenset({CHAT, COMPLETIONS}),
        )

    def check_room(self) -> None:
        pass

    def generate(self, request: GenerationRequest) -> Any:
        class Fixed:
            usage = Usage(prompt_tokens=1, completion_tokens=1)
            served_model = "local-gen"

            async def _deltas(self) -> AsyncIterator[Delta]:
                yield Delta(content="local", finish_reason="stop")

            def __aiter__(self) -> AsyncIterator[Delta]:
                return self._deltas()

            async def aclose(self) -> None:
                pass

        return Fixed()


async def test_a_local_route_generates_when_the_upstream_fails(upstream: ChatUpstream) -> None:
    config = UpstreamConfig(name="local-fallback-up", base_url=upstream.api_url)
    routed_config = RoutedModelConfig(
        kind="upstream",
        id="chat-model",
        routes=[
            RouteConfig(upstream=config.name, model="500"),
            RouteConfig(local="local-gen", weight=0),
        ],
        retry=RetryConfig(retries=0),
    )
    local: Any = {"local-gen": LocalGenerator()}
    model = RoutedModel(routed_config, build_endpoints([config]), local)
    await model.start()
    try:
        generation = model.generate(chat())
        deltas = [delta async for delta in generation]
        assert text_of(deltas) == "local" and generation.usage.completion_tokens == 1
    finally:
        await model.stop()
