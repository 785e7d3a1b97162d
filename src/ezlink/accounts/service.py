"""The accounts service the API calls: keys, admission, metering."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from ezlink.accounts.keys import ApiKey, KeyLimits, hash_secret, utcnow
from ezlink.accounts.ratelimit import (
    Decision,
    Limiter,
    MemoryLimiter,
    RedisLimiter,
    Take,
    format_reset,
)
from ezlink.accounts.store.database import default_database_url, make_engine, migrate
from ezlink.accounts.store.repository import AccountsStore, TokenCounts, Units, UsageEvent

__all__ = ["Accounts", "Meter", "TokenCounts", "Units"]
from ezlink.accounts.usage import UsageRecorder
from ezlink.config import AccountsConfig
from ezlink.errors import EzlinkError, OverloadedError, QuotaExceededError, RateLimitError

logger = logging.getLogger(__name__)

# Status recorded for a request whose client left before the answer.
CLIENT_CLOSED = 499
# What a lost or refused database connection raises (drivers' own errors are
# wrapped in SQLAlchemyError; a refused socket can surface as OSError).
DATABASE_ERRORS = (SQLAlchemyError, OSError)


def database_unavailable() -> OverloadedError:
    return OverloadedError(
        "The accounts database is unavailable; retry shortly.",
        code="accounts_unavailable",
        headers={"Retry-After": "1"},
    )


@dataclass
class Meter:
    """One request's passage through the accounts: limits headers, then usage."""

    key_id: str | None
    model: str
    inputs: int
    user: str | None
    request_id: str | None
    limits: KeyLimits | None
    started: float = field(default_factory=time.perf_counter)
    headers: dict[str, str] = field(default_factory=dict)
    # Tokens taken from the key's TPM bucket at admission (a generation's
    # max_tokens): settlement takes the difference to the real count.
    reserved_tokens: int = 0
    family: str = "embeddings"
    stream: bool = False
    tokens: TokenCounts = field(default_factory=lambda: TokenCounts())
    units: Units = field(default_factory=lambda: Units())
    # Seconds from arrival to the first byte of a streamed answer.
    first_byte_s: float | None = None
    finish_reason: str | None = None
    status: int = CLIENT_CLOSED

    @property
    def prompt_tokens(self) -> int:
        return self.tokens.prompt

    def succeeded(self, tokens: TokenCounts) -> None:
        self.tokens = tokens
        self.status = 200


def ratelimit_headers(limits: KeyLimits, decision: Decision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the buckets a key has."""
    headers: dict[str, str] = {}
    states = iter(decision.states)
    for kind, limit in (("requests", limits.rpm), ("tokens", limits.tpm)):
        if limit is None:
            continue
        state = next(states)
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(state.remaining)))
        headers[f"x-ratelimit-reset-{kind}"] = format_reset(state.reset_s)
    return headers


# A `need` no bucket falls short of: settling charges whatever the level.
ANY_LEVEL = -1e18


def bucket_takes(
    key_id: str, limits: KeyLimits, tokens: int | None, reserved: int = 0
) -> list[Take]:
    """The takes from a key's buckets (only those it has limits for).

    Admission (`tokens` None): one unit from the requests bucket, and the
    `reserved` tokens (a generation's max_tokens) from a tokens bucket that
    must hold them (at least one). Settlement: the tokens used less those
    reserved, at any level (a refund when fewer were used); the requests
    bucket is only read, for the headers.
    """
    settling = tokens is not None
    takes = []
    if limits.rpm is not None:
        cost, need = (0.0, ANY_LEVEL) if settling else (1.0, 1.0)
        takes.append(Take(f"{key_id}:rpm", limits.rpm, cost, need))
    if limits.tpm is not None:
        if settling:
            cost, need = float((tokens or 0) - reserved), ANY_LEVEL
        else:
            cost, need = float(reserved), float(min(max(reserved, 1), limits.tpm))
        takes.append(Take(f"{key_id}:tpm", limits.tpm, cost, need))
    return takes


# An open server (no master key, no key issued yet) asks the database whether
# a key exists at most this often, not on every request: the first key issued
# (by the CLI or another replica) closes every server within this time.
NO_KEYS_RECHECK_S = 1.0
# Keys cached at most (only with key_cache_seconds): a bound on memory.
KEY_CACHE_MAX = 10_000


class Accounts:
    """Owns the database engine, the limiter and the usage recorder."""

    def __init__(
        self,
        store: AccountsStore,
        limiter: Limiter,
        recorder: UsageRecorder,
        key_cache_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.recorder = recorder
        self.key_cache_seconds = key_cache_seconds
        # Secret hash -> (read at, key); see AccountsConfig.key_cache_seconds.
        self._key_cache: dict[str, tuple[float, ApiKey]] = {}
        # Keys are never deleted, so once one exists the server stays closed.
        self._has_keys = False
        self._no_keys_until = 0.0

    @classmethod
    def from_config(cls, config: AccountsConfig) -> Accounts:
        store = AccountsStore(make_engine(config.database_url or default_database_url()))
        limiter: Limiter = RedisLimiter(config.redis_url) if config.redis_url else MemoryLimiter()
        recorder = UsageRecorder(store, config.usage_flush_interval_s, config.usage_batch_size)
        return cls(store, limiter, recorder, config.key_cache_seconds)

    async def start(self) -> None:
        await migrate(self.store.engine)
        self.recorder.start()

    async def stop(self) -> None:
        try:
            await self.recorder.stop()
        finally:
            await self.limiter.close()
            await self.store.engine.dispose()

    async def ping_database(self) -> None:
        """A readiness check: raises when the database cannot be reached."""
        await self.store.any_keys()

    def readiness_checks(self) -> dict[str, Callable[[], Awaitable[object]]]:
        """Named checks for /ready: the database, and Redis when limits use it."""
        checks: dict[str, Callable[[], Awaitable[object]]] = {"database": self.ping_database}
        if isinstance(self.limiter, RedisLimiter):
            checks["redis"] = self.limiter.ping
        return checks

    # -- keys ---------------------------------------------------------------

    async def any_keys(self) -> bool:
        """Whether any key was ever issued; a "no" is trusted for NO_KEYS_RECHECK_S."""
        if self._has_keys or time.monotonic() < self._no_keys_until:
            return self._has_keys
        # One query at a time: the requests that come while it runs keep the
        # last "no" for those milliseconds, instead of each asking again.
        self._no_keys_until = time.monotonic() + NO_KEYS_RECHECK_S
        try:
            self._has_keys = await self.store.any_keys()
        except DATABASE_ERRORS as exc:
            self._no_keys_until = 0.0
            raise database_unavailable() from exc
        return self._has_keys

    async def find_key(self, secret: str) -> ApiKey | None:
        """The key for a secret: read from the database on every call, unless
        `key_cache_seconds` lets a recent read serve (never for a key with a
        token quota, whose use must be read fresh)."""
        digest = hash_secret(secret)
        cached = self._key_cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < self.key_cache_seconds:
            return cached[1]
        try:
            key = await self.store.find_by_hash(digest)
        except DATABASE_ERRORS as exc:
            raise database_unavailable() from exc
        if self.key_cache_seconds and key is not None and key.limits.quota_tokens is None:
            if len(self._key_cache) >= KEY_CACHE_MAX:
                self._key_cache.clear()
            self._key_cache[digest] = (time.monotonic(), key)
        return key

    def forget_cached_keys(self) -> None:
        """A key was changed here: no cached read may outlive the change."""
        self._key_cache.clear()

    # -- admission and usage -------------------------------------------------

    async def _admit(self, meter: Meter) -> None:
        limits, key_id = meter.limits, meter.key_id
        if key_id is None or limits is None:
            return
        left = limits.quota_left
        if left is not None and left <= 0:
            # Retrying cannot help: x-should-retry tells OpenAI's SDKs not to.
            raise QuotaExceededError(
                "You exceeded your current quota: this key has used "
                f"{limits.used_tokens} of its {limits.quota_tokens} tokens.",
                headers={"x-should-retry": "false"},
            )
        takes = bucket_takes(key_id, limits, None, meter.reserved_tokens)
        if not takes:
            return
        decision = await self.limiter.take(takes)
        meter.headers = ratelimit_headers(limits, decision)
        if not decision.allowed:
            retry = max(1, int(decision.retry_after_s + 0.999))
            raise RateLimitError(
                f"Rate limit reached for this key: try again in {retry}s.",
                headers={**meter.headers, "retry-after": str(retry)},
            )

    async def _settle(self, meter: Meter) -> None:
        limits, key_id = meter.limits, meter.key_id
        charged = False
        used = meter.tokens.total
        if key_id is not None and limits is not None and (used or meter.reserved_tokens):
            if limits.tpm is not None:
                decision = await self.limiter.take(
                    bucket_takes(key_id, limits, used, meter.reserved_tokens)
                )
                meter.headers = ratelimit_headers(limits, decision)
            if limits.quota_tokens is not None and used:
                # Charged now, not at the next flush, so the very next request
                # of this key (in any process) sees the quota it has left.
                try:
                    await self.store.charge(key_id, used)
                    charged = True
                except DATABASE_ERRORS:
                    # The answer is ready: deliver it, and let the flush charge it.
                    logger.warning("charging key %s failed; left to the usage flush", key_id)
        self._record(meter, charged=charged)

    def _record(self, meter: Meter, *, charged: bool) -> None:
        self.recorder.record(
            UsageEvent(
                created_at=utcnow(),
                key_id=meter.key_id,
                model=meter.model,
                inputs=meter.inputs,
                prompt_tokens=meter.tokens.prompt,
                completion_tokens=meter.tokens.completion,
                cached_tokens=meter.tokens.cached,
                reasoning_tokens=meter.tokens.reasoning,
                counted_by_ezlink=meter.tokens.counted_by_ezlink,
                family=meter.family,
                stream=meter.stream,
                first_byte_ms=None if meter.first_byte_s is None else meter.first_byte_s * 1000,
                finish_reason=meter.finish_reason,
                unit=meter.units.unit,
                quantity=meter.units.quantity,
                status=meter.status,
                latency_ms=(time.perf_counter() - meter.started) * 1000,
                user=meter.user,
                request_id=meter.request_id,
                charged=charged,
            )
        )

    def record_refusal(
        self,
        *,
        key_id: str | None,
        model: str,
        inputs: int,
        error: EzlinkError,
        started: float,
        user: str | None = None,
        request_id: str | None = None,
        family: str = "embeddings",
    ) -> None:
        """Record a request refused before admission (400, 404, 503) with its
        status and no tokens, so that operators see it in the usage.

        Only an in-memory append: a refusal under a burst costs no database
        work. Requests without a key (anonymous, 401) are not recorded.
        """
        if key_id is None:
            return
        meter = Meter(
            key_id, model, inputs, user, request_id, None, started=started, family=family
        )
        meter.status = error.status_code
        self._record(meter, charged=False)

    async def admit(
        self,
        *,
        key_id: str | None,
        limits: KeyLimits | None,
        model: str,
        inputs: int,
        user: str | None = None,
        request_id: str | None = None,
        family: str = "embeddings",
        stream: bool = False,
        reserve_tokens: int = 0,
    ) -> Meter:
        """Check the quota and take from the rate limits before the model runs.

        Raises 429 (QuotaExceededError or RateLimitError, with Retry-After and
        the x-ratelimit-* headers) and records the refusal.
        """
        meter = Meter(
            key_id,
            model,
            inputs,
            user,
            request_id,
            limits,
            reserved_tokens=reserve_tokens,
            family=family,
            stream=stream,
        )
        try:
            await self._admit(meter)
        except EzlinkError as exc:
            await self.settle(meter, error=exc)
            raise
        return meter

    async def settle(
        self,
        meter: Meter,
        *,
        tokens: TokenCounts | None = None,
        error: BaseException | None = None,
    ) -> None:
        """After the request: charge the tokens and record its usage.

        `tokens` for a success; `error` for a failure (with `tokens`: what was
        produced before it, which is charged); neither: the client left.
        """
        if error is not None:
            if tokens is not None:
                meter.tokens = tokens
            meter.status = error.status_code if isinstance(error, EzlinkError) else 500
        elif tokens is not None:
            meter.succeeded(tokens)
        await self._settle(meter)
