"""Text generation off the event loop: a few sequences at once, a bounded
FIFO queue, and cancellation within one token.

A *slot* is what runs one sequence (for llama.cpp: one context, whose KV
cache holds that sequence). Each slot has its own worker thread; a sequence
holds its slot from its first token to its last. Requests wait in one queue
and take the next free slot in arrival order (first come, first served: a
sequence never waits behind one that came later). Past ``max_queue`` waiting
requests, new ones get 503 with a Retry-After from the measured throughput,
instead of a queueing delay that grows without bound.

The work of a sequence is a plain iterator run on the slot's thread, one
item per generated token; before each item the thread looks at the
sequence's cancel flag. The flag is set when the consumer closes the stream
(``aclose``, the client left) or its task is cancelled, so the sequence
stops within one token and its slot goes to the next in line.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ezlink.errors import OverloadedError

logger = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

# The work of one sequence: given its slot and a "was I cancelled?" check,
# an iterator of its tokens (whatever item type the caller chooses).
Work = Callable[[R, Callable[[], bool]], Iterator[T]]

# How much the throughput estimates move towards each finished sequence.
EMA_WEIGHT = 0.2
MAX_RETRY_AFTER = 60


@dataclass
class SchedulerStats:
    """Counters that metrics read; plain numbers, no dependency on a metrics library."""

    tokens_generated: int = 0
    sequences_started: int = 0
    sequences_finished: int = 0
    # Sequences whose consumer left before their end (queued or running).
    sequences_cancelled: int = 0
    rejected_requests: int = 0


class _End:
    pass


@dataclass
class _Failed:
    error: BaseException


_END = _End()


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Callable[[object, Callable[[], bool]], Iterator[T]]
    items: asyncio.Queue[T | _End | _Failed] = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set once the work left its slot (or never will run).
    done: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "queued"  # queued -> running -> done
    tokens: int = 0
    enqueued_at: float = field(default_factory=time.perf_counter)


class SequenceStream(Generic[T]):
    """The tokens of one submitted sequence, as an async iterator."""

    def __init__(self, scheduler: GenerationScheduler[object], job: _Job[T]) -> None:
        self._scheduler = scheduler
        self._job = job
        self._ended = False

    def __aiter__(self) -> SequenceStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._ended:
            raise StopAsyncIteration
        try:
            item = await self._job.items.get()
        except asyncio.CancelledError:
            # The consumer's task was cancelled (its client left): stop the work.
            self._scheduler._cancel(self._job)
            raise
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        if isinstance(item, _Failed):
            self._ended = True
            raise item.error
        return item

    async def aclose(self) -> None:
        """Stop the sequence (within one token) and wait until its slot is free."""
        self._ended = True
        self._scheduler._cancel(self._job)
        await self._job.done.wait()


class GenerationScheduler(Generic[R]):
    """Runs sequences on a fixed set of slots, one sequence per slot at a time."""

    def __init__(
        self,
        slots: Sequence[R],
        *,
        max_queue: int,
        tokens_per_second: float = 0.0,
        name: str = "generation",
    ) -> None:
        if not slots:
            raise ValueError("a scheduler needs at least one slot")
        self._slots = list(slots)
        self._max_queue = max_queue
        self._name = name
        self._jobs: deque[_Job[object]] = deque()
        self._running: set[_Job[object]] = set()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Measured per slot, to tell a refused client when to come back; the
        # initial figure is the caller's estimate (0: unknown).
        self._slot_tokens_per_second = tokens_per_second / len(self._slots)
        self._tokens_per_sequence = 0.0
        self.stats = SchedulerStats()

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def queue_depth(self) -> int:
        return len(self._jobs)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def tokens_per_second(self) -> float:
        """Measured throughput with every slot busy (0 until a sequence finished)."""
        return self._slot_tokens_per_second * len(self._slots)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(len(self._slots), thread_name_prefix=f"ezlink-{self._name}")
        self._tasks = [asyncio.create_task(self._serve(slot)) for slot in self._slots]

    async def stop(self) -> None:
        """Cancel what is queued and running (the server has drained its
        connections by now), then stop the workers."""
        for job in list(self._jobs):
            self._cancel(job)
        for job in list(self._running):
            job.cancel.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def check_room(self) -> None:
        """Raise OverloadedError (503, Retry-After) when the queue is full."""
        if len(self._jobs) >= self._max_queue:
            self.stats.rejected_requests += 1
            raise OverloadedError(
                "The server is overloaded; retry shortly.",
                headers={"Retry-After": str(self.retry_after_seconds())},
            )

    def retry_after_seconds(self) -> int:
        """Seconds until the queue ahead has run at the measured pace (1 to 60)."""
        rate = self.tokens_per_second
        if rate <= 0 or self._tokens_per_sequence <= 0:
            return 1
        backlog = (len(self._jobs) + len(self._running)) * self._tokens_per_sequence
        return max(1, min(MAX_RETRY_AFTER, math.ceil(backlog / rate)))

    def submit(self, work: Work[R, T]) -> SequenceStream[T]:
        """Queue a sequence; raises OverloadedError when the queue is full.

        Example::

            stream = scheduler.submit(lambda runtime, cancelled: runtime.decode(ids, opts, cancelled))
            async for step in stream: ...
        """
        if not self._tasks:
            raise RuntimeError("scheduler not started")
        self.check_room()
        job: _Job[T] = _Job(work=work)  # type: ignore[arg-type]
        self._jobs.append(job)  # type: ignore[arg-type]
        self._wakeup.set()
        return SequenceStream(self, job)  # type: ignore[arg-type]

    def _cancel(self, job: _Job[T]) -> None:
        if job.state == "done" or job.cancel.is_set():
            return
        job.cancel.set()
        self.stats.sequences_cancelled += 1
        if job.state == "queued":
            # Never ran: it leaves the queue at once.
            self._jobs.remove(job)  # type: ignore[arg-type]
            job.state = "done"
            job.done.set()

    async def _serve(self, slot: R) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            job = self._jobs.popleft()
            job.state = "running"
            self._running.add(job)
            self.stats.sequences_started += 1
            started = time.perf_counter()
            end: _End | _Failed = _END
            try:
                # Shielded: on stop() the thread ends within a token (cancel
                # flag), and the slot must not be reused before it has.
                await asyncio.shield(loop.run_in_executor(self._executor, self._run, job, slot, loop))
            except asyncio.CancelledError:
                job.cancel.set()
                raise
            except Exception as exc:
                logger.exception("%s: a sequence failed", self._name)
                end = _Failed(exc)
            finally:
                # The slot is free before the consumer hears of the end.
                self._running.discard(job)
                job.state = "done"
                job.done.set()
                if not job.cancel.is_set():
                    self.stats.sequences_finished += 1
                self._measure(job.tokens, time.perf_counter() - started)
                job.items.put_nowait(end)

    def _run(self, job: _Job[T], slot: R, loop: asyncio.AbstractEventLoop) -> None:
        """On the slot's thread: pull tokens until the end or the cancel flag."""
        tokens = iter(job.work(slot, job.cancel.is_set))
        try:
            while not job.cancel.is_set():
                try:
                    item = next(tokens)
                except StopIteration:
                    break
                job.tokens += 1
                loop.call_soon_threadsafe(self._deliver, job, item)
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()

    def _deliver(self, job: _Job[T], item: T) -> None:
        self.stats.tokens_generated += 1
        job.items.put_nowait(item)

    def _measure(self, tokens: int, seconds: float) -> None:
        if tokens < 4 or seconds <= 0:
            return  # too short to say anything about the pace
        rate = tokens / seconds
        if self._tokens_per_sequence <= 0:
            self._slot_tokens_per_second, self._tokens_per_sequence = rate, float(tokens)
            return
        self._slot_tokens_per_second += EMA_WEIGHT * (rate - self._slot_tokens_per_second)
        self._tokens_per_sequence += EMA_WEIGHT * (tokens - self._tokens_per_sequence)
