"""Dynamic batching: one queue per model, batches run on worker threads.

Requests put their tokenized inputs in the queue and wait. Each worker takes
the next batch as soon as it is free, so a lone request runs at once and a
crowd of them shares forward passes.

A batch is filled from the requests in arrival order, each taking a turn of
at most `inputs_per_turn` inputs; a request with inputs left over goes to
the back of the line. So ordinary requests pass whole, first come first
served (one input per request per batch, true round-robin, would make every
request of a crowd finish together at the end), while a 2048-input request
cannot starve the small ones behind it. A request's inputs go shortest
first, and a batch that still mixes short and long inputs runs as parts of
similar lengths (`split_by_length`), which cuts padding; the batch stays
under a padded-token budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ezlink.backends.base import Vectors
from ezlink.config import BatchingConfig
from ezlink.errors import InternalError, OverloadedError

logger = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[Sequence[int]]], Vectors]

# Forward passes on CPU, where unset in the config: (inputs, padded tokens).
CPU_PASS_LIMITS = (16, 512)

# A pass starts afresh where inputs grow by more than this factor, so no
# pass pads its rows by more than 25%: on CPU a pass costs about its padded
# tokens, and small passes cost little more per token than large ones.
PASS_LENGTH_STEP = 1.25
# ...unless the pass holds fewer rows than this: each pass has a fixed cost,
# and raw ONNX on 2 cores runs 4-row passes within 5% of 16-row ones.
PASS_MIN_ROWS = 4


# The drain rate weighs the last this-many busy seconds most (exponential decay).
DRAIN_MEMORY_S = 10.0


@dataclass(eq=False)
class _Job:
    """One request's inputs: those still queued, and the rows done so far."""

    sequences: Sequence[Sequence[int]]
    future: asyncio.Future[Vectors]
    out: Vectors
    waiting: deque[int]
    queued_tokens: int
    done: int = 0
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatcherStats:
    """Counters that metrics read; plain numbers, no dependency on a metrics library."""

    batches: int = 0
    inputs: int = 0
    # Real tokens run, and tokens run counting the padding: their ratio is
    # how much of the compute went to real work.
    tokens: int = 0
    padded_tokens: int = 0
    rejected_requests: int = 0
    # Inputs of requests whose client left before they ran: never run.
    dropped_inputs: int = 0


def split_by_length(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Rows of a batch grouped into forward passes of similar lengths, shortest first.

    Fair batch formation mixes requests, so a batch may hold inputs of 5 and
    of 180 tokens; padding all of them to 180 would waste most of the work.
    A new pass starts where it would exceed `max_rows` rows or `max_tokens`
    padded tokens, or where the length grows past PASS_LENGTH_STEP times the
    pass's shortest (once it has PASS_MIN_ROWS rows). Long inputs thus run
    a few at a time, which on CPU is also faster per token (the attention
    matrices stay in cache).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    parts: list[list[int]] = [[]]
    for row in order:
        current, length = parts[-1], lengths[row]
        if current and (
            len(current) >= max_rows
            or (len(current) + 1) * length > max_tokens
            or (len(current) >= PASS_MIN_ROWS and length > PASS_LENGTH_STEP * lengths[current[0]])
        ):
            parts.append([])
        parts[-1].append(row)
    if len(parts) > 1:
        last, before = parts[-1], parts[-2]
        rows = len(before) + len(last)
        if (
            len(last) < PASS_MIN_ROWS
            and rows <= max_rows
            and rows * lengths[last[-1]] <= max_tokens
        ):
            before.extend(parts.pop())
    return parts


def pass_limits(config: BatchingConfig, device: str) -> tuple[int, int]:
    """(inputs, padded tokens) per forward pass: the config's, else the device's best."""
    rows, tokens = (
        CPU_PASS_LIMITS if device == "cpu" else (config.max_batch_size, config.max_batch_tokens)
    )
    return config.max_pass_size or rows, config.max_pass_tokens or tokens


class Batcher:
    """Queues tokenized inputs of one model and runs them in batches."""

    def __init__(
        self,
        run_batch: RunBatch,
        dimension: int,
        config: BatchingConfig,
        workers: int,
        device: str = "cpu",
    ) -> None:
        self._run_batch = run_batch
        self._dimension = dimension
        self._config = config
        self._pass_rows, self._pass_tokens = pass_limits(config, device)
        self._workers = max(1, workers)
        self._jobs: deque[_Job] = deque()
        self._queued_tokens = 0
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The queue's measured drain rate, to tell a rejected client when to
        # come back: tokens and busy seconds, each decayed (DRAIN_MEMORY_S).
        self._drained_tokens = 0.0
        self._drained_seconds = 0.0
        self._last_drain: float | None = None
        self.stats = BatcherStats()
        # Observer set by ezlink.ops.metrics: (inputs in the batch, seconds each waited).
        self.on_batch: Callable[[int, Sequence[float]], None] | None = None

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def queued_requests(self) -> int:
        return len(self._jobs)

    @property
    def running_batches(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="ezlink-infer")
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        """Finish what is queued and in flight, then stop the workers."""
        while self._jobs or self._in_flight:
            self._idle.clear()
            await self._idle.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def embed(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        """Vectors for the inputs, in order; raises OverloadedError when the queue is full."""
        tokens = sum(len(seq) for seq in sequences)
        self.check_room()
        loop = asyncio.get_running_loop()
        job = _Job(
            sequences=sequences,
            future=loop.create_future(),
            out=np.empty((len(sequences), self._dimension), dtype=np.float32),
            waiting=deque(sorted(range(len(sequences)), key=lambda i: len(sequences[i]))),
            queued_tokens=tokens,
        )
        self._jobs.append(job)
        self._queued_tokens += tokens
        self._wakeup.set()
        try:
            return await job.future
        finally:
            # A cancelled request (client gone) leaves the queue at once.
            if job.waiting:
                self._cancel(job)

    def check_room(self) -> None:
        """Raise OverloadedError (503, Retry-After) when the queue is full."""
        # Admitted while the queue is under its limit, whatever the request's
        # size: a big request would otherwise wait for an empty queue, which
        # under steady load never comes. The queue overshoots by at most one
        # request (bounded by the per-request token limit).
        if self._queued_tokens >= self._config.max_queue_tokens:
            self.stats.rejected_requests += 1
            raise OverloadedError(
                "The server is overloaded; retry shortly.",
                headers={"Retry-After": str(self._retry_after_seconds())},
            )

    @property
    def drain_rate(self) -> float:
        """Tokens per second the queue has recently drained at while busy (0: not measured)."""
        if self._drained_seconds <= 0:
            return 0.0
        return self._drained_tokens / self._drained_seconds

    def estimated_wait_seconds(self) -> float:
        """Seconds until what is queued now has drained at the measured rate."""
        rate = self.drain_rate
        return self._queued_tokens / rate if rate > 0 else 1.0

    def _retry_after_seconds(self) -> int:
        """Seconds until the queue has drained at the measured rate (1 to 60)."""
        return max(1, min(60, math.ceil(self.estimated_wait_seconds())))

    def _cancel(self, job: _Job) -> None:
        """The request was cancelled (its client left): what has not run never will."""
        self.stats.dropped_inputs += len(job.waiting)
        logger.info(
            "request cancelled: dropped %d of its %d inputs before they ran",
            len(job.waiting),
            len(job.sequences),
        )
        self._drop(job)

    def _drop(self, job: _Job) -> None:
        job.waiting.clear()
        self._queued_tokens -= job.queued_tokens
        job.queued_tokens = 0
        if job in self._jobs:
            self._jobs.remove(job)
        self._signal_if_idle()

    def _signal_if_idle(self) -> None:
        if not self._jobs and not self._in_flight:
            self._idle.set()

    def _take_batch(self) -> list[tuple[_Job, int]]:
        """Next batch: turns in arrival order, under the size and padded-token budgets."""
        batch: list[tuple[_Job, int]] = []
        longest = 0
        budget, max_size = self._config.max_batch_tokens, self._config.max_batch_size
        turn = self._config.inputs_per_turn
        while self._jobs and len(batch) < max_size:
            job = self._jobs[0]
            taken = 0
            while job.waiting and taken < turn and len(batch) < max_size:
                length = len(job.sequences[job.waiting[0]])
                widest = max(longest, length)
                if batch and (len(batch) + 1) * widest > budget:
                    return self._end_turn(batch, job)
                longest = widest
                batch.append((job, job.waiting.popleft()))
                job.queued_tokens -= length
                self._queued_tokens -= length
                taken += 1
            self._end_turn(batch, job)
        return batch

    def _end_turn(self, batch: list[tuple[_Job, int]], job: _Job) -> list[tuple[_Job, int]]:
        """Take a finished request out of the line, or send it to the back."""
        self._jobs.popleft()
        if job.waiting:
            self._jobs.append(job)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take_batch()
            if self.on_batch is not None:
                now = time.perf_counter()
                try:
                    self.on_batch(len(batch), [now - job.enqueued_at for job, _ in batch])
                except Exception:
                    # An observer must never cost the batch (its requests would hang).
                    logger.exception("batch observer failed")
            self._in_flight += 1
            try:
                sequences = [job.sequences[index] for job, index in batch]
                started = time.perf_counter()
                vectors, padded = await loop.run_in_executor(
                    self._executor, self._run_in_parts, sequences
                )
            except Exception:
                logger.exception("inference failed on a batch of %d inputs", len(batch))
                self._fail({job for job, _ in batch})
            else:
                self._deliver(batch, vectors)
                self._note_pace(sequences, padded)
                self._note_drain(sum(len(seq) for seq in sequences), started)
            finally:
                self._in_flight -= 1
                self._signal_if_idle()

    def _run_in_parts(self, sequences: Sequence[Sequence[int]]) -> tuple[Vectors, int]:
        """Run a batch as passes of similar lengths (on a worker thread); (vectors, padded tokens)."""
        parts = split_by_length(
            [len(seq) for seq in sequences],
            self._pass_rows,
            self._pass_tokens,
        )
        if len(parts) == 1:
            return self._run_batch(sequences), len(sequences) * max(map(len, sequences))
        vectors = np.empty((len(sequences), self._dimension), dtype=np.float32)
        padded = 0
        for rows in parts:
            part = [sequences[row] for row in rows]
            vectors[rows] = self._run_batch(part)
            padded += len(part) * max(map(len, part))
        return vectors, padded

    def _note_pace(self, sequences: Sequence[Sequence[int]], padded: int) -> None:
        self.stats.tokens += sum(len(seq) for seq in sequences)
        self.stats.padded_tokens += padded

    def _note_drain(self, tokens: int, started: float) -> None:
        """Count a batch's tokens against the busy time since the last batch ended.

        Measured, not derived: the earlier estimate, one batch's pace times
        the workers, held only where the workers run side by side as fast as
        one alone; they share cores with each other, the tokenizer and the
        event loop, and its Retry-After said 49-60 s for a queue that drained
        in 15 s. The time counted runs from the later of the last batch's end
        and this batch's start, so idle time between bursts does not count.
        """
        now = time.perf_counter()
        since = started if self._last_drain is None else max(started, self._last_drain)
        self._last_drain = now
        seconds = max(now - since, 1e-6)
        keep = math.exp(-seconds / DRAIN_MEMORY_S)
        self._drained_tokens = self._drained_tokens * keep + tokens
        self._drained_seconds = self._drained_seconds * keep + seconds

    def _deliver(self, batch: list[tuple[_Job, int]], vectors: Vectors) -> None:
        stats = self.stats
        stats.batches += 1
        stats.inputs += len(batch)
        for row, (job, index) in enumerate(batch):
            if job.future.done():
                continue
            job.out[index] = vectors[row]
            job.done += 1
            if job.done == len(job.sequences):
                job.future.set_result(job.out)

    def _fail(self, jobs: set[_Job]) -> None:
        for job in jobs:
            if job.waiting:
                self._drop(job)
            if not job.future.done():
                job.future.set_exception(InternalError("Inference failed."))
