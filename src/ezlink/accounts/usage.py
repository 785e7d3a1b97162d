"""Usage recording: batched off the request path, durable on shutdown.

`record` only appends to a list; a background task writes what has piled up
every `flush_interval_s` (or sooner when `batch_size` events wait) in one
transaction. A failed write keeps its events for the next try, and `stop`
writes whatever is left, so a graceful shutdown (SIGTERM: uvicorn finishes
the in-flight requests, then runs the app's lifespan exit) loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ezlink.accounts.store.repository import AccountsStore, UsageEvent

logger = logging.getLogger(__name__)
# Tries of the final flush at shutdown before giving up (and saying so).
FINAL_FLUSH_TRIES = 5


class UsageRecorder:
    def __init__(self, store: AccountsStore, flush_interval_s: float, batch_size: int) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False

    def record(self, event: UsageEvent) -> None:
        self._pending.append(event)
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ezlink-usage-flusher")

    async def flush(self) -> None:
        """Write everything recorded so far; on failure keep it for the next try."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self.store.write_usage(batch)
            except Exception:
                # Put it back in front, keeping the order. Either the
                # transaction rolled back, or its commit landed and only the
                # reply was lost: then the retry stores nothing again, since
                # the store skips event ids it already has.
                self._pending = batch + self._pending
                raise

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("writing usage failed; will retry (%d pending)", self.pending)

    async def stop(self) -> None:
        # Never cancel a flush midway: a cancelled commit could have landed
        # anyway, and retrying it would count its events twice.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        for attempt in range(1, FINAL_FLUSH_TRIES + 1):
            try:
                await self.flush()
                return
            except Exception:
                logger.exception("final usage flush failed (try %d)", attempt)
                await asyncio.sleep(0.2 * attempt)
        logger.error("lost %d usage events: the database stayed unavailable", self.pending)
