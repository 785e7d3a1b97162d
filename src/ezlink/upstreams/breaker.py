"""A circuit breaker: takes a failing upstream out of rotation, then probes it back.

States: ``up`` (closed: calls flow) → after ``failure_threshold`` consecutive
failures, ``open`` (no calls) → after ``cooldown`` seconds, ``half_open``:
one probe call at a time; its success closes the circuit, its failure opens
it again for another cool-down.

Apart from its state, an upstream may ask for a pause (a 429 or 503 with
``Retry-After``): ``hold_off`` keeps new requests away from it until then,
so a rate-limited upstream is not hit by every request in flight.

Read-only state for dashboards and metrics: ``CircuitBreaker.snapshot()``
returns a frozen ``BreakerSnapshot`` (state, consecutive failures, times
opened, seconds until a probe is allowed); it never changes the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ezlink.config import BreakerConfig

CircuitState = Literal["up", "open", "half_open"]
# The longest pause an upstream's Retry-After can impose on everyone: a
# bogus header must not take a route out of rotation for hours.
MAX_HOLD_S = 60.0


@dataclass(frozen=True)
class BreakerSnapshot:
    state: CircuitState
    consecutive_failures: int
    times_opened: int
    # Seconds until an open circuit lets a probe through, or an upstream's
    # Retry-After pause ends (0 when neither).
    retry_in_s: float


class CircuitBreaker:
    """Not thread-safe: used from one event loop, where calls do not interleave."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._state: CircuitState = "up"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._times_opened = 0
        self._held_until = 0.0

    @property
    def state(self) -> CircuitState:
        if self._state == "open" and self._cooled_down():
            return "half_open"
        return self._state

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.config.cooldown

    def hold_off(self, seconds: float) -> None:
        """The upstream asked for a pause (Retry-After): route nothing new to it until then."""
        self._held_until = max(self._held_until, self._clock() + min(seconds, MAX_HOLD_S))

    def held_for(self) -> float:
        """Seconds left of the upstream's pause (0 when none)."""
        return max(0.0, self._held_until - self._clock())

    def available(self) -> bool:
        """Whether a new request may be routed here now (does not take the probe)."""
        if self.held_for() > 0:
            return False
        state = self.state
        return state == "up" or (state == "half_open" and not self._probe_in_flight)

    def before_call(self) -> bool:
        """Ask to make a call; in half-open state only one probe is let through."""
        state = self.state
        if state == "up":
            return True
        if state == "half_open" and not self._probe_in_flight:
            self._state = "half_open"
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._state = "up"
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or (
            self._state == "up" and self._failures >= self.config.failure_threshold
        ):
            self._open()
        self._probe_in_flight = False

    def abandon(self) -> None:
        """A permitted call ended with no verdict (cancelled): free the probe."""
        self._probe_in_flight = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._times_opened += 1

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        retry_in = (
            max(0.0, self.config.cooldown - (self._clock() - self._opened_at))
            if state == "open"
            else 0.0
        )
        retry_in = max(retry_in, self.held_for())
        return BreakerSnapshot(
            state=state,
            consecutive_failures=self._failures,
            times_opened=self._times_opened,
            retry_in_s=retry_in,
        )
