"""The accounts service the API calls: keys, admission, metering."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from ezlink.accounts.billing import Bound
from ezlink.accounts.credits import Credits, charge_of
from ezlink.accounts.journal import UsageJournal, journal_dir
from ezlink.accounts.keys import ApiKey, KeyLimits, hash_secret, utcnow
from ezlink.accounts.meter import CLIENT_CLOSED, Meter, bucket_takes, ratelimit_headers
from ezlink.accounts.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from ezlink.accounts.store.billing import BillingStore
from ezlink.accounts.store.database import data_dir, default_database_url, make_engine, migrate
from ezlink.accounts.store.ledger import LedgerStore
from ezlink.accounts.store.repository import AccountsStore, TokenCounts, Units, UsageEvent
from ezlink.accounts.usage import UsageRecorder
from ezlink.config import AccountsConfig, PriceConfig
from ezlink.errors import EzlinkError, OverloadedError, QuotaExceededError, RateLimitError

__all__ = [
    "CLIENT_CLOSED",
    "Accounts",
    "Meter",
    "TokenCounts",
    "Units",
    "bucket_takes",
    "ratelimit_headers",
]

logger = logging.getLogger(__name__)
# Every process releases expired holds (and replays dead replicas' usage
# journals) this often, and once at start.
SWEEP_INTERVAL_S = 5.0
# Tries of a settlement transaction (a deadlock or a dropped connection).
SETTLE_TRIES = 3
# What a lost or refused database connection raises (drivers' own errors are
# wrapped in SQLAlchemyError; a refused socket can surface as OSError).
DATABASE_ERRORS = (SQLAlchemyError, OSError)


def database_unavailable() -> OverloadedError:
    return OverloadedError(
        "The accounts database is unavailable; retry shortly.",
        code="accounts_unavailable",
        headers={"Retry-After": "1"},
    )


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
        self.credits = Credits(BillingStore(store.engine), LedgerStore(store.engine))
        self._sweeper: asyncio.Task[None] | None = None
        self.key_cache_seconds = key_cache_seconds
        # Secret hash -> (read at, key); see AccountsConfig.key_cache_seconds.
        self._key_cache: dict[str, tuple[float, ApiKey]] = {}
        # Keys are never deleted, so once one exists the server stays closed.
        self._has_keys = False
        self._no_keys_until = 0.0

    @classmethod
    def from_config(cls, config: AccountsConfig) -> Accounts:
        url = config.database_url or default_database_url()
        store = AccountsStore(make_engine(url))
        limiter: Limiter = RedisLimiter(config.redis_url) if config.redis_url else MemoryLimiter()
        journal = UsageJournal(journal_dir(data_dir(), url))
        recorder = UsageRecorder(
            store, config.usage_flush_interval_s, config.usage_batch_size, journal
        )
        return cls(store, limiter, recorder, config.key_cache_seconds)

    async def start(self) -> None:
        await migrate(self.store.engine)
        await self.sweep()
        self.recorder.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ezlink-hold-sweeper")

    async def sweep(self) -> None:
        """Write the usage of dead processes' journals; release expired holds."""
        await self.recorder.replay()
        released = await self.credits.billing.sweep()
        if released:
            logger.info("released %d expired holds", len(released))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweeping expired holds failed; will retry")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        try:
            await self.recorder.stop()
        finally:
            await self.limiter.close()
            await self.credits.billing.close()
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
        if takes:
            decision = await self.limiter.take(takes)
            meter.headers = ratelimit_headers(limits, decision)
            if not decision.allowed:
                retry = max(1, int(decision.retry_after_s + 0.999))
                raise RateLimitError(
                    f"Rate limit reached for this key: try again in {retry}s.",
                    headers={**meter.headers, "retry-after": str(retry)},
                )
            meter.bucket_taken = True
        try:
            await self.credits.reserve(meter)
        except DATABASE_ERRORS as exc:
            raise database_unavailable() from exc

    async def _settle(self, meter: Meter) -> None:
        limits, key_id = meter.limits, meter.key_id
        used = meter.tokens.total
        tpm = key_id is not None and limits is not None and limits.tpm is not None
        # Only after an admission the buckets granted: a refused one took nothing.
        taken = meter.bucket_taken and (used or meter.reserved_tokens)
        if tpm and key_id is not None and limits is not None and taken:
            decision = await self.limiter.take(
                bucket_takes(key_id, limits, used, meter.reserved_tokens)
            )
            meter.headers = ratelimit_headers(limits, decision)
        event = self._event(meter)
        if meter.reserved:
            # Written before the answer leaves, with the charge and the hold's
            # release, in one transaction: nothing to lose on a crash. A failed
            # try left nothing behind (and a landed one is not repeated: its
            # usage row's event id), so it is tried again.
            for attempt in range(SETTLE_TRIES):
                try:
                    await self.credits.settle(meter, event)
                    return
                except DATABASE_ERRORS:
                    logger.warning("settling key %s failed (try %d)", key_id, attempt + 1)
            # The answer is ready: deliver it; the flush stores the usage and
            # tokens (uncharged), the sweeper releases the hold.
            event = dataclasses.replace(event, cost=0)
        self.recorder.record(event)

    def _event(self, meter: Meter) -> UsageEvent:
        limits = meter.limits
        return UsageEvent(
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
            team_id=None if limits is None else limits.team_id,
            cost=charge_of(meter) if limits is not None and limits.team_id else 0,
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
        meter = Meter(key_id, model, inputs, user, request_id, None, started=started, family=family)
        meter.status = error.status_code
        self.recorder.record(self._event(meter))

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
        price: PriceConfig | None = None,
        bound: Bound | None = None,
    ) -> Meter:
        """Check the quota, take from the rate limits, and hold the request's
        most cost (`price` × `bound`) and tokens before the model runs.

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
            price=price,
            bound=bound or Bound(prompt_tokens=reserve_tokens),
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
