"""Per-key rate limits as token buckets, in process memory or in Redis.

A bucket holds up to `capacity` units and refills at `capacity` per minute.
A request takes one unit from the requests bucket when it is admitted; the
tokens bucket must be positive to admit, and is charged the real token count
when the request is done (the count is only known after tokenizing), so a
big request may take it below zero and delay the next ones, as OpenAI does.

With Redis, one Lua script checks and takes from all of a key's buckets
atomically, on the Redis server's clock, so several server processes share
the limits exactly.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

SECONDS_PER_MINUTE = 60.0
# A bucket nobody touched for this long is full again; Redis expires it.
IDLE_EXPIRY_S = 120
REDIS_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Take:
    """Take `cost` units from a bucket if it holds at least `need`."""

    name: str
    capacity: int
    cost: float
    need: float

    @property
    def rate_per_s(self) -> float:
        return self.capacity / SECONDS_PER_MINUTE


@dataclass(frozen=True)
class BucketState:
    capacity: int
    remaining: float
    # Seconds until the bucket is full again.
    reset_s: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    states: tuple[BucketState, ...]
    # Seconds until the refused take would succeed; 0 when allowed.
    retry_after_s: float


class Limiter(Protocol):
    async def take(self, takes: list[Take]) -> Decision: ...

    async def close(self) -> None: ...


def _state(take: Take, tokens: float) -> BucketState:
    return BucketState(take.capacity, tokens, max(0.0, (take.capacity - tokens) / take.rate_per_s))


class MemoryLimiter:
    """Buckets in this process: exact for one process, per process for several."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, take: Take, now: float) -> float:
        tokens, stamp = self._buckets.get(take.name, (float(take.capacity), now))
        return min(float(take.capacity), tokens + (now - stamp) * take.rate_per_s)

    async def take(self, takes: list[Take]) -> Decision:
        # No await inside: the check and the take are atomic on the event loop.
        now = time.monotonic()
        levels = [self._level(take, now) for take in takes]
        short = [
            (take.need - level) / take.rate_per_s
            for take, level in zip(takes, levels, strict=True)
            if level < take.need
        ]
        if short:
            states = tuple(_state(t, lv) for t, lv in zip(takes, levels, strict=True))
            return Decision(False, states, max(short))
        states_list = []
        for take, level in zip(takes, levels, strict=True):
            self._buckets[take.name] = (level - take.cost, now)
            states_list.append(_state(take, level - take.cost))
        return Decision(True, tuple(states_list), 0.0)

    async def close(self) -> None:
        return None


# KEYS: bucket names. ARGV: idle expiry, then capacity, rate/s, cost, need per key.
# Returns {allowed, retry_after, level1, level2, ...} as strings (floats).
TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local expiry = tonumber(ARGV[1])
local levels = {}
local wait = 0
for i, name in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local capacity = tonumber(ARGV[base + 1])
  local rate = tonumber(ARGV[base + 2])
  local need = tonumber(ARGV[base + 4])
  local saved = redis.call('HMGET', name, 'tokens', 'stamp')
  local tokens = tonumber(saved[1]) or capacity
  local stamp = tonumber(saved[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
  levels[i] = tokens
  if tokens < need then
    wait = math.max(wait, (need - tokens) / rate)
  end
end
local allowed = 0
if wait == 0 then
  allowed = 1
  for i, name in ipairs(KEYS) do
    local base = 1 + (i - 1) * 4
    levels[i] = levels[i] - tonumber(ARGV[base + 3])
    redis.call('HSET', name, 'tokens', tostring(levels[i]), 'stamp', tostring(now))
    redis.call('EXPIRE', name, expiry)
  end
end
local out = {tostring(allowed), tostring(wait)}
for i = 1, #levels do out[#out + 1] = tostring(levels[i]) end
return out
"""


class RedisLimiter:
    """Buckets in Redis, shared by every process that uses the same server."""

    def __init__(self, url: str, namespace: str = "ezlink:ratelimit:") -> None:
        from redis.asyncio import Redis

        # Short timeouts: a hung Redis must not hang every request behind it.
        self._redis: Any = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._script: Any = self._redis.register_script(TAKE_SCRIPT)
        self._namespace = namespace

    async def take(self, takes: list[Take]) -> Decision:
        from redis.exceptions import RedisError

        args: list[float | int] = [IDLE_EXPIRY_S]
        for take in takes:
            args += [take.capacity, take.rate_per_s, take.cost, take.need]
        try:
            reply = await self._script(keys=[self._namespace + t.name for t in takes], args=args)
        except (RedisError, OSError):
            # Fail open: an outage of the limiter must not take the API down
            # with it (quotas, in the database, still hold). /ready reports it.
            logger.warning("Redis unreachable: rate limits not applied to this request")
            full = tuple(BucketState(t.capacity, float(t.capacity), 0.0) for t in takes)
            return Decision(True, full, 0.0)
        allowed, wait, *levels = (float(part) for part in reply)
        states = tuple(_state(t, lv) for t, lv in zip(takes, levels, strict=True))
        return Decision(bool(allowed), states, wait)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < SECONDS_PER_MINUTE:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, SECONDS_PER_MINUTE)
    return f"{int(minutes)}m{rest:.0f}s"
