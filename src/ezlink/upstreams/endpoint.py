"""One upstream as the router sees it: its client, its circuit breaker, its statistics.

``UpstreamEndpoint.snapshot()`` is the read-only view that the admin API
(/admin/upstreams, `ezlink upstreams`) and the metrics export read: a frozen
``UpstreamSnapshot`` (circuit state, counts, last error, latency EWMA).
Reading it never changes routing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ezlink.config import UpstreamConfig
from ezlink.errors import EzlinkError
from ezlink.upstreams.breaker import CircuitBreaker, CircuitState
from ezlink.upstreams.client import (
    UpstreamBatch,
    UpstreamCallFailed,
    UpstreamClient,
    UpstreamReply,
)

logger = logging.getLogger(__name__)

# Weight of the newest latency sample in the moving average.
LATENCY_EWMA_ALPHA = 0.2


@dataclass(frozen=True)
class UpstreamSnapshot:
    """One upstream's health, as the admin API and metrics show it."""

    name: str
    url: str
    kind: str
    state: CircuitState
    consecutive_failures: int
    times_opened: int
    retry_in_s: float
    calls: int
    failures: int
    in_flight: int
    latency_ewma_ms: float | None
    last_error: str | None
    last_error_age_s: float | None


class UpstreamEndpoint:
    """An upstream client with its circuit breaker and running statistics."""

    def __init__(self, client: UpstreamClient, breaker: CircuitBreaker) -> None:
        self.client = client
        self.breaker = breaker
        self.name = client.name
        self.calls = 0
        self.failures = 0
        self.in_flight = 0
        self.latency_ewma_ms: float | None = None
        self.last_error: str | None = None
        self._last_error_at: float | None = None

    def record_success(self, seconds: float) -> None:
        self.breaker.record_success()
        ms = seconds * 1000
        previous = self.latency_ewma_ms
        self.latency_ewma_ms = (
            ms if previous is None else previous + LATENCY_EWMA_ALPHA * (ms - previous)
        )

    def record_failure(self, error: UpstreamCallFailed) -> None:
        self.breaker.record_failure()
        if error.retry_after is not None:
            # Asked of every request, not just the one that got it: new ones
            # go elsewhere, or wait, until the pause ends.
            self.breaker.hold_off(error.retry_after)
        self.failures += 1
        self.last_error = error.reason
        self._last_error_at = time.monotonic()
        logger.warning("upstream %s: %s", self.name, error.reason)

    async def call(self, batch: UpstreamBatch) -> UpstreamReply:
        """One call, with the breaker and statistics kept; the breaker was asked before."""
        self.calls += 1
        self.in_flight += 1
        started = time.monotonic()
        try:
            reply = await self.client.embed(batch)
        except UpstreamCallFailed as exc:
            self.record_failure(exc)
            raise
        except EzlinkError:
            # The client's own error: the upstream answered, so it is healthy.
            self.record_success(time.monotonic() - started)
            raise
        except BaseException:
            self.breaker.abandon()
            raise
        finally:
            self.in_flight -= 1
        self.record_success(reply.seconds)
        return reply

    def snapshot(self) -> UpstreamSnapshot:
        breaker = self.breaker.snapshot()
        return UpstreamSnapshot(
            name=self.name,
            url=self.client.display_url,
            kind=self.client.config.kind,
            state=breaker.state,
            consecutive_failures=breaker.consecutive_failures,
            times_opened=breaker.times_opened,
            retry_in_s=round(breaker.retry_in_s, 3),
            calls=self.calls,
            failures=self.failures,
            in_flight=self.in_flight,
            latency_ewma_ms=None
            if self.latency_ewma_ms is None
            else round(self.latency_ewma_ms, 2),
            last_error=self.last_error,
            last_error_age_s=(
                None
                if self._last_error_at is None
                else round(time.monotonic() - self._last_error_at, 3)
            ),
        )


def build_endpoints(configs: Iterable[UpstreamConfig]) -> dict[str, UpstreamEndpoint]:
    return {
        config.name: UpstreamEndpoint(UpstreamClient(config), CircuitBreaker(config.breaker))
        for config in configs
    }
