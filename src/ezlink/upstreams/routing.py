"""A routed model: one public name served by upstreams and local models.

For each request the routes are ordered by weighted random choice (weight 0:
fallback only, in config order). The whole request goes to one route at a
time, so that every vector of one answer comes from the same model; it is
split to the upstream's per-call input limit and the calls run concurrently,
bounded by the upstream's ``max_concurrency``. A failed call (5xx, 429,
timeout, broken connection, malformed answer) is retried on the same route
with exponential backoff and jitter — or after the upstream's
``Retry-After`` — then the request falls back to the next route. An
upstream's ``Retry-After`` also pauses it for every other request: they go
to other routes first, and wait for the pause only where it is short
(``retry.max_retry_after``) and no route is left. Each
upstream has a circuit breaker (``engine.breaker``) shared by every model
routed to it. A client's own error (4xx from the upstream) ends the request
at once. Nothing waits past the model's ``timeout``. Chat and completions
walk the same routes (``generate``, ``generation_routing``); the rules both
share (order, backoff, skipping) are in ``routes``.

Read-only health for the admin API and metrics: ``upstream_snapshots(models)``
lists one frozen ``UpstreamSnapshot`` (``engine.endpoint``: circuit state,
counts, last error, latency EWMA) per upstream used by any routed model.
Reading them never changes routing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from ezlink.config import RequestLimitsConfig, RouteConfig, RoutedModelConfig
from ezlink.engine.cl100k import cl100k
from ezlink.engine.rules import (
    check_dimensions,
    check_token_limits,
    decode_token_inputs,
    reduce_dimensions,
)
from ezlink.engine.types import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    Embedder,
    EmbedRequest,
    EmbedResult,
    ServedModel,
    card_of,
)
from ezlink.errors import (
    EzlinkError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ezlink.upstreams.client import (
    UpstreamBatch,
    UpstreamCallFailed,
    UpstreamReply,
)
from ezlink.upstreams.endpoint import UpstreamEndpoint, UpstreamSnapshot
from ezlink.upstreams.generation_routing import RoutedGeneration
from ezlink.upstreams.media_relay import MEDIA_CAPABILITIES, MediaRelay
from ezlink.upstreams.providers import GenerationClient, generation_client
from ezlink.upstreams.routes import (
    Route,
    RouteFailed,
    backoff_delay,
    circuit_open,
    ensure_available,
    means_unavailable,
    weighted_order,
)

if TYPE_CHECKING:
    from ezlink.engine.generation_types import Generation, GenerationRequest

T = TypeVar("T")
logger = logging.getLogger(__name__)

# Requests with more text than this are tokenized (for limits and usage) off
# the event loop, where they would stall other requests (~100k chars ≈ 10 ms).
TOKENIZE_OFF_LOOP_CHARS = 100_000


def count_tokens(texts: list[str] | None, token_ids: list[list[int]] | None) -> list[int]:
    """cl100k tokens per input, as OpenAI counts them: our limits, and our usage
    when an upstream reports none."""
    if token_ids is not None:
        return [len(ids) for ids in token_ids]
    encoding = cl100k()
    # Not encode_ordinary_batch: it starts a thread pool per call (~7 ms).
    return [len(encoding.encode_ordinary(text)) for text in texts or []]


def chunks(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


class RoutedModel(MediaRelay):
    """Serves one RoutedModelConfig (a ServedModel); audio, images and
    moderations are relayed by ``media_relay``."""

    def __init__(
        self,
        config: RoutedModelConfig,
        endpoints: Mapping[str, UpstreamEndpoint],
        local_models: Mapping[str, ServedModel],
        rng: random.Random | None = None,
        limits: RequestLimitsConfig | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or RequestLimitsConfig()
        self.routes = [self._route(route, endpoints, local_models) for route in config.routes]
        self.endpoints = list(
            {r.endpoint.name: r.endpoint for r in self.routes if r.endpoint}.values()
        )
        self.rng = rng or random.Random()
        self.card = card_of(
            config,
            # The upstream decides what it serves; a family it lacks fails there.
            frozenset({EMBEDDINGS, CHAT, COMPLETIONS, *MEDIA_CAPABILITIES}),
            dimension=config.dimension,
            details={"routes": [r.target for r in self.routes]},
        )
        # Chat and completions clients, by upstream: they call through its connection.
        self.generation_clients: dict[str, GenerationClient] = {
            endpoint.name: generation_client(endpoint.client) for endpoint in self.endpoints
        }

    @staticmethod
    def _route(
        route: RouteConfig,
        endpoints: Mapping[str, UpstreamEndpoint],
        local_models: Mapping[str, ServedModel],
    ) -> Route:
        if route.local is not None:
            return Route(
                target=f"local:{route.local}", weight=route.weight, local=local_models[route.local]
            )
        assert route.upstream is not None
        endpoint = endpoints[route.upstream]
        model = route.model or endpoint.client.config.model or ""
        return Route(
            target=route.upstream, weight=route.weight, endpoint=endpoint, upstream_model=model
        )

    async def start(self) -> None:
        # Local models are started by the registry that also serves them directly.
        for endpoint in self.endpoints:
            await endpoint.client.open()
            await self.generation_clients[endpoint.name].open()
        if self.endpoints:
            await asyncio.to_thread(cl100k)  # load it now, not in the first request (~0.5 s)

    async def stop(self) -> None:
        for endpoint in self.endpoints:
            await self.generation_clients[endpoint.name].close()
            await endpoint.client.close()

    @property
    def local_models(self) -> list[ServedModel]:
        """The local models this model may route to."""
        return [route.local for route in self.routes if route.local is not None]

    def check_room(self) -> None:
        """Always room here: a full local route is skipped for the next route."""

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        deadline = asyncio.get_running_loop().time() + self.config.timeout
        counts = await self._token_counts(request)

        def embed_on(route: Route) -> Awaitable[EmbedResult]:
            return self._embed_on(route, request, counts, deadline)

        return await self.first_success(embed_on, deadline)

    def generate(self, request: GenerationRequest) -> Generation:
        """Chat or completion on the first route that answers (``generation_routing``)."""
        return RoutedGeneration(self, request)

    async def first_success(self, attempt: Callable[[Route], Awaitable[T]], deadline: float) -> T:
        """`attempt`'s answer on the first route that gives one, in weighted order."""
        loop = asyncio.get_running_loop()
        failures: list[RouteFailed] = []
        try:
            async with asyncio.timeout_at(deadline):
                held: list[Route] = []
                for route in weighted_order(self.routes, self.rng):
                    try:
                        return await attempt(route)
                    except RouteFailed as failed:
                        failures.append(failed)
                        if failed.held_for:
                            held.append(route)
                # Every route failed or was skipped. One paused by its
                # upstream's Retry-After gets one more try when the pause
                # ends, if it ends soon: a short wait beats a 503.
                for route in held:
                    assert route.endpoint is not None
                    breaker = route.endpoint.breaker
                    pause = breaker.held_for()
                    if pause > self.config.retry.max_retry_after or loop.time() + pause >= deadline:
                        continue
                    while (pause := breaker.held_for()) > 0:
                        await asyncio.sleep(pause)
                    try:
                        return await attempt(route)
                    except RouteFailed as failed:
                        failures.append(failed)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"No route of model `{self.config.id}` answered within {self.config.timeout:g}s."
            ) from None
        raise self.final_error(failures)

    async def _token_counts(self, request: EmbedRequest) -> list[int]:
        """cl100k counts, checked against the limits (local routes count their own)."""
        if all(route.local is not None for route in self.routes):
            return []
        texts = request.texts or []
        if sum(len(text) for text in texts) > TOKENIZE_OFF_LOOP_CHARS:
            counts = await asyncio.to_thread(count_tokens, request.texts, request.token_ids)
        else:
            counts = count_tokens(request.texts, request.token_ids)
        check_token_limits(counts, self.limits.max_input_tokens, self.limits.max_request_tokens)
        return counts

    def final_error(self, failures: list[RouteFailed]) -> EzlinkError:
        """What the client sees when every route failed or was skipped."""
        tried = [f for f in failures if not f.circuit_open]
        if not tried:
            waits = [r.endpoint.breaker.snapshot().retry_in_s for r in self.routes if r.endpoint]
            wait = max(1, round(min(waits, default=1.0)))
            reasons = "; ".join(dict.fromkeys(f.error.message for f in failures))
            return UpstreamUnavailableError(
                f"No upstream of model `{self.config.id}` takes requests now: {reasons}",
                headers={"Retry-After": str(wait)},
            )
        last = tried[-1].error
        summary = f"Every route of model `{self.config.id}` failed; last: {last.message}"
        if isinstance(last, UpstreamTimeoutError):
            return UpstreamTimeoutError(summary)
        if all(means_unavailable(f.error) for f in tried):
            retry_after = last.retry_after if isinstance(last, UpstreamCallFailed) else None
            headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else {}
            return UpstreamUnavailableError(summary, headers=headers)
        if isinstance(last, UpstreamError):
            return UpstreamError(summary)
        return last

    async def _embed_on(
        self, route: Route, request: EmbedRequest, counts: list[int], deadline: float
    ) -> EmbedResult:
        if route.local is not None:
            return await self._embed_locally(route.local, request)
        assert route.endpoint is not None
        endpoint = route.endpoint
        ensure_available(endpoint)
        client = endpoint.client
        texts, token_ids = request.texts, request.token_ids
        if token_ids is not None and not client.forwards_token_ids:
            texts, token_ids = decode_token_inputs(token_ids), None
        dimensions = request.dimensions if client.forwards_dimensions else None
        parts = chunks(request.count, client.config.max_inputs_per_request)
        batches = [
            UpstreamBatch(
                model=route.upstream_model,
                texts=texts[part] if texts is not None else None,
                token_ids=token_ids[part] if token_ids is not None else None,
                dimensions=dimensions,
                user=request.user,
            )
            for part in parts
        ]
        replies = await _gather_or_cancel(
            [
                self.call_with_retries(endpoint, functools.partial(endpoint.call, batch), deadline)
                for batch in batches
            ]
        )
        if len({reply.vectors.shape[1] for reply in replies}) != 1:
            raise RouteFailed(
                UpstreamError(f"Upstream `{endpoint.name}` answered vectors of different widths.")
            )
        vectors = np.concatenate([reply.vectors for reply in replies])
        if request.dimensions is not None and not client.forwards_dimensions:
            check_dimensions(request.dimensions, vectors.shape[1], model=self.config.id)
            vectors = reduce_dimensions(vectors, request.dimensions, normalize=False)
        tokens = sum(
            reply.prompt_tokens if reply.prompt_tokens is not None else sum(counts[part])
            for reply, part in zip(replies, parts, strict=True)
        )
        return EmbedResult(vectors=vectors.astype(np.float32, copy=False), prompt_tokens=tokens)

    async def _embed_locally(self, model: ServedModel, request: EmbedRequest) -> EmbedResult:
        if EMBEDDINGS not in model.card.capabilities:
            error = UpstreamError(f"The local model `{model.card.id}` does not embed.")
            raise RouteFailed(error, circuit_open=True)
        try:
            return await cast(Embedder, model).embed(request)
        except EzlinkError as exc:
            if exc.status_code < 500:
                raise
            raise RouteFailed(exc) from None

    async def call_with_retries(
        self, endpoint: UpstreamEndpoint, call: Callable[[], Awaitable[T]], deadline: float
    ) -> T:
        """`call` on one upstream, retried with backoff (or after its Retry-After)."""
        retry = self.config.retry
        loop = asyncio.get_running_loop()
        last: UpstreamCallFailed | None = None
        for attempt in range(retry.retries + 1):
            if not endpoint.breaker.before_call():
                raise RouteFailed(last or circuit_open(endpoint.name), circuit_open=last is None)
            try:
                return await call()
            except UpstreamCallFailed as exc:
                last = exc
            if not last.retryable or attempt == retry.retries:
                break
            delay = backoff_delay(attempt, retry, self.rng)
            if last.retry_after is not None:
                if last.retry_after > retry.max_retry_after:
                    break
                delay = max(delay, last.retry_after)
            if loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        assert last is not None
        raise RouteFailed(last)


async def _gather_or_cancel(
    calls: list[Coroutine[Any, Any, UpstreamReply]],
) -> list[UpstreamReply]:
    """All results in order; the first failure cancels the calls still running."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def upstream_snapshots(models: Iterable[object]) -> list[UpstreamSnapshot]:
    """One snapshot per upstream used by any routed model among `models`."""
    seen: dict[str, UpstreamEndpoint] = {}
    for model in models:
        if isinstance(model, RoutedModel):
            for endpoint in model.endpoints:
                seen.setdefault(endpoint.name, endpoint)
    return [endpoint.snapshot() for endpoint in seen.values()]
