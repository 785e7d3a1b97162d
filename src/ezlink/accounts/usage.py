"""Usage recording: batched off the request path, durable on shutdown.

`record` only appends to a list; a background task writes what has piled up
every `flush_interval_s` (or sooner when `batch_size` events wait) in one
transaction. A failed write keeps its events for the next try, and `stop`
writes whatever is left, so a graceful shutdown (SIGTERM: uvicorn finishes
the in-flight requests, then runs the app's lifespan exit) loses nothing.
Each event is also appended to a local journal (journal.py) before it is
kept in memory, so that a `kill -9` loses nothing either: the next start (or
another replica's sweep) replays the dead process's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from ezlink.accounts.journal import UsageJournal, read_segment
from ezlink.accounts.store.repository import AccountsStore, UsageEvent

logger = logging.getLogger(__name__)
# Tries of the final flush at shutdown before giving up (and saying so).
FINAL_FLUSH_TRIES = 5


class UsageRecorder:
    def __init__(
        self,
        store: AccountsStore,
        flush_interval_s: float,
        batch_size: int,
        journal: UsageJournal | None = None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._pending: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False

    def record(self, event: UsageEvent) -> None:
        if self.journal is not None:
            self.journal.append(event)
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
            # The journal's segments so far hold exactly this batch's events.
            mark = self.journal.rotate() if self.journal is not None else 0
            try:
                await self.store.write_usage(batch)
                if self.journal is not None:
                    self.journal.committed(mark)
            except Exception:
                # Put it back in front, keeping the order. Either the
                # transaction rolled back, or its commit landed and only the
                # reply was lost: then the retry stores nothing again, since
                # the store skips event ids it already has.
                self._pending = batch + self._pending
                raise

    async def replay(self) -> int:
        """Write the events of dead processes' journals (idempotent); how many."""
        if self.journal is None:
            return 0
        replayed = 0
        for path, fd in self.journal.orphans():
            try:
                events = read_segment(fd)
                if events:
                    await self.store.write_usage(events)
                Path(path).unlink(missing_ok=True)
                replayed += len(events)
            finally:
                os.close(fd)
        if replayed:
            logger.info("replayed %d usage events from dead processes' journals", replayed)
        return replayed

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
                if self.journal is not None:
                    self.journal.close()
                return
            except Exception:
                logger.exception("final usage flush failed (try %d)", attempt)
                await asyncio.sleep(0.2 * attempt)
        logger.error("lost %d usage events: the database stayed unavailable", self.pending)
