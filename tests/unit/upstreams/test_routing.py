"""Routing: weighted order, backoff, splitting, token counts, fallback rules."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from ezlink.config import RequestLimitsConfig, RetryConfig, RoutedModelConfig
from ezlink.engine.generation_types import GenerationRequest
from ezlink.engine.rules import check_token_limits
from ezlink.engine.types import EmbedRequest, EmbedResult, ModelCard
from ezlink.errors import InvalidRequestError, OverloadedError
from ezlink.upstreams.routing import (
    Route,
    RoutedModel,
    backoff_delay,
    chunks,
    count_tokens,
    weighted_order,
)
from tests.support.fake_generator import EchoGenerator


def route(target: str, weight: float) -> Route:
    return Route(target=target, weight=weight)


def test_weighted_order_picks_first_in_proportion_to_weight() -> None:
    routes = [route("heavy", 3), route("light", 1), route("spare", 0)]
    rng = random.Random(7)
    firsts = Counter(weighted_order(routes, rng)[0].target for _ in range(20_000))
    assert firsts["spare"] == 0
    assert 0.72 < firsts["heavy"] / 20_000 < 0.78


def test_weight_zero_routes_are_fallbacks_in_config_order() -> None:
    routes = [route("b-spare", 0), route("main", 1), route("a-spare", 0)]
    order = [r.target for r in weighted_order(routes, random.Random(1))]
    assert order == ["main", "b-spare", "a-spare"]


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    retry = RetryConfig(backoff_base=0.1, backoff_max=1.0)
    rng = random.Random(3)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)]:
        delays = [backoff_delay(attempt, retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not in lockstep


def test_chunks_cover_every_input_once_in_order() -> None:
    parts = chunks(5000, 2048)
    assert [(p.start, p.stop) for p in parts] == [(0, 2048), (2048, 4096), (4096, 5000)]
    assert chunks(3, 2048) == [slice(0, 3)]


def test_our_count_is_cl100k_tokens_or_token_ids() -> None:
    assert count_tokens(["hello world"], None) == [2]
    assert count_tokens(None, [[1, 2, 3], [4]]) == [3, 1]


def test_the_contracts_token_limits_hold_for_routed_models() -> None:
    limits = RequestLimitsConfig(max_input_tokens=10, max_request_tokens=25)
    per_input, per_request = limits.max_input_tokens, limits.max_request_tokens
    check_token_limits([10, 10], per_input, per_request)
    with pytest.raises(InvalidRequestError) as raised:
        check_token_limits([3, 11], per_input, per_request)
    assert (
        raised.value.code == "context_length_exceeded" and "Input 1 has 11" in raised.value.message
    )
    with pytest.raises(InvalidRequestError) as raised:
        check_token_limits([10, 10, 10], per_input, per_request)
    assert raised.value.code == "max_tokens_per_request"


class FakeLocal:
    """A ServedModel whose answer or error the test sets."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.card = ModelCard(id=name, public_names=(name,), owned_by="t", created=0)
        self.error = error
        self.calls = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return EmbedResult(vectors=np.ones((request.count, 2), np.float32), prompt_tokens=5)


def routed(*locals_: FakeLocal) -> RoutedModel:
    config = RoutedModelConfig.model_validate(
        {
            "kind": "upstream",
            "id": "routed",
            "routes": [{"local": m.card.id, "weight": 0} for m in locals_],
        }
    )
    return RoutedModel(config, {}, {m.card.id: m for m in locals_})


async def test_an_overloaded_route_falls_back_to_the_next() -> None:
    busy = FakeLocal("busy", OverloadedError("full"))
    spare = FakeLocal("spare")
    result = await routed(busy, spare).embed(EmbedRequest(texts=["a", "b"]))
    assert result.vectors.shape == (2, 2) and busy.calls == 1 and spare.calls == 1


async def test_a_client_error_ends_the_request_without_fallback() -> None:
    strict = FakeLocal("strict", InvalidRequestError("too long", param="input"))
    spare = FakeLocal("spare")
    with pytest.raises(InvalidRequestError):
        await routed(strict, spare).embed(EmbedRequest(texts=["a"]))
    assert spare.calls == 0


async def test_every_local_route_overloaded_is_the_last_routes_503() -> None:
    model = routed(FakeLocal("x", OverloadedError("full")), FakeLocal("y", OverloadedError("full")))
    with pytest.raises(OverloadedError) as raised:
        await model.embed(EmbedRequest(texts=["a"]))
    assert raised.value.status_code == 503


async def test_a_chat_request_goes_to_the_local_route_that_generates() -> None:
    """An embeddings model on a chat route is skipped; the generator answers."""
    embedder, generator = FakeLocal("embedder"), EchoGenerator("local-chat")
    config = RoutedModelConfig.model_validate(
        {
            "kind": "upstream",
            "id": "routed",
            "routes": [{"local": "embedder"}, {"local": "local-chat", "weight": 0}],
        }
    )
    model = RoutedModel(config, {}, {"embedder": embedder, "local-chat": generator})
    request = GenerationRequest(
        kind="chat", model="routed", body={}, messages=({"role": "user", "content": "hi you"},)
    )
    generation = model.generate(request)
    text = "".join([delta.content or "" async for delta in generation])
    assert text == "hi you" and embedder.calls == 0
    assert generation.usage.completion_tokens == 2
