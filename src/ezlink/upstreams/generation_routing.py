"""Chat and completions on a routed model: the routes, retries, fallback,
circuit breakers and Retry-After pauses of embeddings (``routing``), until the
first delta.

A generation is tried route by route, in the same weighted order and with the
same retries, as an embeddings request; a try has succeeded when its first
delta arrives (or its answer ends empty). Until then nothing has reached the
client, so a failed try may be retried or fall back; the routed model's
``timeout`` bounds this whole phase. From the first delta on, the generation
is bound to its route: a failure ends it (``UpstreamCallFailed``, an
``UpstreamError``, raised from iteration) and counts against that upstream's
breaker. The breaker counts a try as a success when its first delta arrives;
the latency statistics are the time to that delta.

A local route serves the generation when its model generates text
(``Generator.generate``); a full local model (503) falls back to the next route.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ezlink.engine.generation_types import Delta, Generation, GenerationRequest, Usage
from ezlink.engine.types import CHAT, COMPLETIONS, Capability, Generator
from ezlink.errors import EzlinkError, UpstreamError
from ezlink.upstreams.client import UpstreamCallFailed
from ezlink.upstreams.endpoint import UpstreamEndpoint
from ezlink.upstreams.routes import Route, RouteFailed, ensure_available

if TYPE_CHECKING:
    from ezlink.upstreams.routing import RoutedModel


@dataclass
class _Started:
    """A try that produced its first delta (None: its answer was empty)."""

    route: Route
    generation: Generation
    deltas: AsyncIterator[Delta]
    first: Delta | None
    endpoint: UpstreamEndpoint | None = None


class RoutedGeneration:
    """One request's generation on a routed model (a ``Generation``).

    ``route`` is the route that answered, once one has; ``response`` the
    upstream's whole answer for ``stream: false`` when its provider keeps one.
    """

    def __init__(self, model: RoutedModel, request: GenerationRequest) -> None:
        self.usage = Usage()
        self.served_model: str | None = None
        self.route: Route | None = None
        self._model = model
        self._request = request
        self._started: _Started | None = None
        self._deltas: AsyncIterator[Delta] | None = None
        self._closed = False
        self._deadline = 0.0

    @property
    def response(self) -> dict[str, Any] | None:
        return self._started.generation.response if self._started is not None else None

    def __aiter__(self) -> AsyncIterator[Delta]:
        if self._deltas is None:
            self._deltas = self._run()
        return self._deltas

    async def aclose(self) -> None:
        """Stop at once (the upstream sees its connection close); usage is final after."""
        self._closed = True
        if self._started is not None:
            await self._started.generation.aclose()
            self._take_usage()
        if self._deltas is not None:
            # Iterated by another task (RuntimeError): it ends now its generation is closed.
            with contextlib.suppress(RuntimeError):
                await self._deltas.aclose()  # type: ignore[attr-defined]

    def _take_usage(self) -> None:
        assert self._started is not None
        self.usage = self._started.generation.usage
        self.served_model = self._started.generation.served_model or self.served_model

    async def _run(self) -> AsyncIterator[Delta]:
        if self._closed:
            return
        model = self._model
        self._deadline = asyncio.get_running_loop().time() + model.config.timeout
        self._started = started = await model.first_success(self._start_on, self._deadline)
        self.route = started.route
        self._take_usage()
        try:
            if self._closed:
                await started.generation.aclose()
                return
            if started.first is not None:
                yield started.first
            async for delta in started.deltas:
                yield delta
        except UpstreamCallFailed as exc:
            if started.endpoint is not None:
                started.endpoint.record_failure(exc)
            raise
        finally:
            if started.endpoint is not None:
                started.endpoint.in_flight -= 1
            self._take_usage()

    async def _start_on(self, route: Route) -> _Started:
        if route.local is not None:
            return await self._start_locally(route)
        assert route.endpoint is not None
        endpoint = route.endpoint
        ensure_available(endpoint)
        client = self._model.generation_clients[endpoint.name]

        async def first_delta() -> _Started:
            generation = client.generate(self._request, route.upstream_model)
            return await self._first_from_upstream(route, endpoint, generation)

        return await self._model.call_with_retries(endpoint, first_delta, self._deadline)

    async def _first_from_upstream(
        self, route: Route, endpoint: UpstreamEndpoint, generation: Generation
    ) -> _Started:
        """Wait for the first delta, keeping the breaker and statistics as ``endpoint.call`` does."""
        endpoint.calls += 1
        endpoint.in_flight += 1
        started = time.monotonic()
        deltas = aiter(generation)
        try:
            first = await anext(deltas, None)
        except BaseException as exc:
            endpoint.in_flight -= 1
            if isinstance(exc, UpstreamCallFailed):
                endpoint.record_failure(exc)
            elif isinstance(exc, EzlinkError):
                # The client's own error: the upstream answered, so it is healthy.
                endpoint.record_success(time.monotonic() - started)
            else:
                endpoint.breaker.abandon()
            await _close_quietly(generation)
            raise
        endpoint.record_success(time.monotonic() - started)
        return _Started(route, generation, deltas, first, endpoint)

    async def _start_locally(self, route: Route) -> _Started:
        local = route.local
        family: Capability = CHAT if self._request.kind == "chat" else COMPLETIONS
        if local is None or family not in local.card.capabilities:
            error = UpstreamError(f"The local model `{route.target}` does not serve {family}.")
            raise RouteFailed(error, circuit_open=True)
        generation: Generation | None = None
        try:
            local.check_room()
            generation = cast(Generator, local).generate(self._request)
            assert generation is not None
            deltas = aiter(generation)
            first = await anext(deltas, None)
        except EzlinkError as exc:
            if generation is not None:
                await _close_quietly(generation)
            if exc.status_code < 500:
                raise
            raise RouteFailed(exc) from None
        return _Started(route, generation, deltas, first)


async def _close_quietly(generation: Generation) -> None:
    with contextlib.suppress(Exception):
        await generation.aclose()
