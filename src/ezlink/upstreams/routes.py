"""The routes of a routed model, and the rules every request walks them by,
whatever it asks (embeddings, chat, completions): weighted order, backoff,
when an upstream is skipped, which failures mean "unavailable"."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ezlink.config import RetryConfig
from ezlink.engine.types import ServedModel
from ezlink.errors import EzlinkError, UpstreamUnavailableError
from ezlink.upstreams.client import UpstreamCallFailed, UpstreamUnreachable
from ezlink.upstreams.endpoint import UpstreamEndpoint


@dataclass(frozen=True)
class Route:
    """Where a routed model may send a request: an upstream model, or a local model."""

    target: str
    weight: float
    endpoint: UpstreamEndpoint | None = None
    upstream_model: str = ""
    local: ServedModel | None = None


class RouteFailed(Exception):
    """Every try on one route failed; `error` is what the client would see."""

    def __init__(
        self, error: EzlinkError, circuit_open: bool = False, held_for: float = 0.0
    ) -> None:
        super().__init__(error.message)
        self.error = error
        # Not tried: the circuit is open, or the upstream asked for a pause
        # (`held_for` seconds left of it).
        self.circuit_open = circuit_open
        self.held_for = held_for


def weighted_order(routes: Sequence[Route], rng: random.Random) -> list[Route]:
    """Routes by weighted random choice without replacement; weight-0 routes last, in order."""
    weighted = [r for r in routes if r.weight > 0]
    # Efraimidis–Spirakis: sorting by u**(1/w) draws without replacement by weight.
    weighted.sort(key=lambda r: rng.random() ** (1.0 / r.weight), reverse=True)
    return weighted + [r for r in routes if r.weight <= 0]


def backoff_delay(attempt: int, retry: RetryConfig, rng: random.Random) -> float:
    """Exponential backoff with jitter, so that retrying clients do not move in step."""
    ceiling = min(retry.backoff_max, retry.backoff_base * 2.0**attempt)
    return float(ceiling * (0.5 + 0.5 * rng.random()))


def ensure_available(endpoint: UpstreamEndpoint) -> None:
    """RouteFailed (not tried) while the upstream's circuit is open or it asked for a pause."""
    if not endpoint.breaker.available():
        held_for = endpoint.breaker.held_for()
        error = _paused(endpoint.name, held_for) if held_for else circuit_open(endpoint.name)
        raise RouteFailed(error, circuit_open=True, held_for=held_for)


def circuit_open(name: str) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(f"Upstream `{name}` is out of rotation (circuit open).")


def _paused(name: str, seconds: float) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(
        f"Upstream `{name}` asked for a pause (Retry-After): {seconds:.1f} s left."
    )


def means_unavailable(error: EzlinkError) -> bool:
    if isinstance(error, UpstreamUnreachable | UpstreamUnavailableError):
        return True
    # 529: Anthropic's "overloaded".
    return isinstance(error, UpstreamCallFailed) and error.status in (429, 503, 529)
