"""The circuit breaker: when an upstream leaves rotation, and how it comes back."""

from __future__ import annotations

import pytest

from ezlink.config import BreakerConfig
from ezlink.upstreams.breaker import MAX_HOLD_S, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 10) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    config = BreakerConfig(failure_threshold=threshold, cooldown=cooldown)
    return CircuitBreaker(config, clock=clock), clock


def test_breaker_opens_after_consecutive_failures_only() -> None:
    circuit, _ = breaker(threshold=3)
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()  # resets the run
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "up" and circuit.before_call()
    circuit.record_failure()
    assert circuit.state == "open"
    assert not circuit.available() and not circuit.before_call()


def test_breaker_lets_one_probe_through_after_the_cooldown() -> None:
    circuit, clock = breaker(threshold=1, cooldown=10)
    circuit.record_failure()
    clock.now += 9.9
    assert circuit.state == "open"
    clock.now += 0.2
    assert circuit.state == "half_open"
    assert circuit.before_call()
    assert not circuit.before_call()  # the probe is in flight
    circuit.record_success()
    assert circuit.state == "up" and circuit.before_call()


def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    circuit, clock = breaker(threshold=5, cooldown=10)
    for _ in range(5):
        circuit.record_failure()
    clock.now += 10
    assert circuit.before_call()
    circuit.record_failure()
    assert circuit.state == "open"
    assert circuit.snapshot().retry_in_s == pytest.approx(10)
    assert circuit.snapshot().times_opened == 2


def test_an_abandoned_probe_frees_the_half_open_slot() -> None:
    circuit, clock = breaker(threshold=1, cooldown=1)
    circuit.record_failure()
    clock.now += 1
    assert circuit.before_call()
    circuit.abandon()
    assert circuit.available() and circuit.before_call()


def test_snapshot_reads_without_changing_the_breaker() -> None:
    circuit, clock = breaker(threshold=1, cooldown=1)
    circuit.record_failure()
    clock.now += 5
    first = circuit.snapshot()
    assert first.state == "half_open" and first.retry_in_s == 0
    assert circuit.snapshot() == first
    assert circuit.before_call()


def test_an_upstreams_pause_keeps_new_requests_away_until_it_ends() -> None:
    circuit, clock = breaker()
    circuit.hold_off(2.0)
    assert not circuit.available()
    assert circuit.snapshot().retry_in_s == 2.0
    # A request that already waited out its own Retry-After may call again.
    assert circuit.before_call()
    clock.now += 2.0
    assert circuit.available() and circuit.held_for() == 0


def test_a_pause_is_never_shortened_and_never_longer_than_the_cap() -> None:
    circuit, _ = breaker()
    circuit.hold_off(5.0)
    circuit.hold_off(1.0)
    assert circuit.held_for() == 5.0
    circuit.hold_off(86_400)
    assert circuit.held_for() == MAX_HOLD_S
