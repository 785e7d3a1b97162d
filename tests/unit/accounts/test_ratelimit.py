"""Token buckets in process memory, and the headers they produce."""

from __future__ import annotations

from ezlink.accounts.keys import KeyLimits
from ezlink.accounts.ratelimit import MemoryLimiter, Take, format_reset
from ezlink.accounts.service import bucket_takes, ratelimit_headers


async def test_requests_bucket_admits_rpm_requests_then_refuses() -> None:
    limiter = MemoryLimiter()
    limits = KeyLimits(rpm=3)
    decisions = [await limiter.take(bucket_takes("k", limits, None)) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    # One request refills in 60/3 = 20 s.
    assert 0 < decisions[-1].retry_after_s <= 20


async def test_refused_take_takes_nothing_from_any_bucket() -> None:
    limiter = MemoryLimiter()
    takes = [Take("a", 10, cost=1, need=1), Take("b", 10, cost=0, need=11)]
    refused = await limiter.take(takes)
    assert not refused.allowed
    allowed = await limiter.take([Take("a", 10, cost=1, need=1)])
    assert allowed.states[0].remaining == 9  # `a` was not charged by the refused take


async def test_tokens_are_charged_after_the_request_and_may_go_below_zero() -> None:
    limiter = MemoryLimiter()
    limits = KeyLimits(tpm=100)
    assert (await limiter.take(bucket_takes("k", limits, None))).allowed
    charged = await limiter.take(bucket_takes("k", limits, 150))
    assert charged.allowed and charged.states[0].remaining < 0
    assert not (await limiter.take(bucket_takes("k", limits, None))).allowed


async def test_keys_have_separate_buckets() -> None:
    limiter = MemoryLimiter()
    limits = KeyLimits(rpm=1)
    assert (await limiter.take(bucket_takes("a", limits, None))).allowed
    assert (await limiter.take(bucket_takes("b", limits, None))).allowed
    assert not (await limiter.take(bucket_takes("a", limits, None))).allowed


async def test_headers_follow_openai_names_for_the_limits_a_key_has() -> None:
    limiter = MemoryLimiter()
    limits = KeyLimits(rpm=60, tpm=1000)
    decision = await limiter.take(bucket_takes("k", limits, None))
    headers = ratelimit_headers(limits, decision)
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "1000"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-reset-tokens"] == "0ms"
    assert ratelimit_headers(KeyLimits(), decision) == {}


def test_reset_durations_read_like_openai() -> None:
    assert format_reset(0.02) == "20ms"
    assert format_reset(1.5) == "1.5s"
    assert format_reset(360) == "6m0s"
