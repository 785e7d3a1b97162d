"""The generation scheduler with a fake step function: queue limit, FIFO turns, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from ezlink.engine.generation import GenerationScheduler
from ezlink.errors import OverloadedError


class Gate:
    """A step function whose tokens come only when the test lets them."""

    def __init__(self) -> None:
        self.allowed = threading.Semaphore(0)
        self.steps = 0
        self.started: list[str] = []

    def work(self, name: str, tokens: int) -> Callable[[str, Callable[[], bool]], Iterator[str]]:
        def run(slot: str, cancelled: Callable[[], bool]) -> Iterator[str]:
            self.started.append(name)
            for i in range(tokens):
                assert not cancelled()
                # Wait for permission, but never forever: a cancel must get through.
                while not self.allowed.acquire(timeout=0.01):
                    if cancelled():
                        return
                self.steps += 1
                yield f"{name}{i}"

        return run


def fast(name: str, tokens: int) -> Callable[[str, Callable[[], bool]], Iterator[str]]:
    def run(slot: str, cancelled: Callable[[], bool]) -> Iterator[str]:
        for i in range(tokens):
            yield f"{name}{i}"

    return run


async def collect(stream: object) -> list[str]:
    return [item async for item in stream]  # type: ignore[attr-defined]


async def started(scheduler: GenerationScheduler[str]) -> GenerationScheduler[str]:
    await scheduler.start()
    return scheduler


async def test_runs_sequences_and_counts_tokens() -> None:
    scheduler = await started(GenerationScheduler(["slot"], max_queue=4))
    try:
        results = await asyncio.gather(*(collect(scheduler.submit(fast(n, 3))) for n in "ab"))
        assert results == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]
        assert scheduler.stats.tokens_generated == 6
        assert scheduler.stats.sequences_finished == 2
        assert scheduler.queue_depth == scheduler.in_flight == 0
    finally:
        await scheduler.stop()


async def test_queue_full_is_503_with_retry_after() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["slot"], max_queue=2))
    try:
        running = scheduler.submit(gate.work("run", 1))
        first = asyncio.ensure_future(running.__anext__())
        while scheduler.in_flight == 0:
            await asyncio.sleep(0.001)
        queued = [scheduler.submit(gate.work(f"q{i}", 1)) for i in range(2)]
        assert scheduler.queue_depth == 2
        with pytest.raises(OverloadedError) as refused:
            scheduler.submit(gate.work("late", 1))
        assert refused.value.status_code == 503
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert scheduler.stats.rejected_requests == 1
        with pytest.raises(OverloadedError):
            scheduler.check_room()
        gate.allowed.release(3)
        assert await first == "run0"
        for stream in queued:
            assert len(await collect(stream)) == 1
    finally:
        await scheduler.stop()


async def test_retry_after_follows_measured_throughput() -> None:
    scheduler = await started(GenerationScheduler(["slot"], max_queue=0))
    try:
        scheduler._measure(tokens=100, seconds=1.0)  # 100 tokens/s, 100 tokens a sequence
        scheduler._jobs.extend([object()] * 5)  # type: ignore[list-item]
        assert scheduler.retry_after_seconds() == 5
        scheduler._jobs.clear()
    finally:
        await scheduler.stop()


async def test_turns_are_first_come_first_served() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["slot"], max_queue=10))
    try:
        streams = [scheduler.submit(gate.work(name, 2)) for name in "abcd"]
        gate.allowed.release(8)
        results = await asyncio.gather(*(collect(s) for s in streams))
        assert gate.started == ["a", "b", "c", "d"]
        assert results[3] == ["d0", "d1"]
    finally:
        await scheduler.stop()


async def test_two_slots_run_side_by_side() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["one", "two"], max_queue=10))
    try:
        streams = [scheduler.submit(gate.work(name, 1)) for name in "abc"]
        while scheduler.in_flight < 2:
            await asyncio.sleep(0.001)
        assert scheduler.queue_depth == 1
        gate.allowed.release(3)
        await asyncio.gather(*(collect(s) for s in streams))
    finally:
        await scheduler.stop()


async def test_aclose_stops_within_a_token_and_frees_the_slot() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["slot"], max_queue=10))
    try:
        long = scheduler.submit(gate.work("long", 1000))
        waiting = scheduler.submit(fast("next", 2))
        gate.allowed.release(1)
        assert await long.__anext__() == "long0"
        await long.aclose()
        # At most the one token in flight when the flag was set.
        assert gate.steps <= 2
        assert scheduler.stats.sequences_cancelled == 1
        assert await collect(waiting) == ["next0", "next1"]
        assert scheduler.in_flight == 0
    finally:
        await scheduler.stop()


async def test_cancelled_consumer_task_stops_the_sequence() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["slot"], max_queue=10))
    try:
        stream = scheduler.submit(gate.work("long", 1000))
        consumer = asyncio.ensure_future(collect(stream))
        gate.allowed.release(2)
        while gate.steps < 2:
            await asyncio.sleep(0.001)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        after = scheduler.submit(fast("after", 1))
        assert await collect(after) == ["after0"]
        assert scheduler.stats.sequences_cancelled == 1
        assert gate.steps <= 3
    finally:
        await scheduler.stop()


async def test_cancelling_a_queued_sequence_frees_its_queue_place() -> None:
    gate = Gate()
    scheduler = await started(GenerationScheduler(["slot"], max_queue=1))
    try:
        running = scheduler.submit(gate.work("run", 1))
        while scheduler.in_flight == 0:
            await asyncio.sleep(0.001)
        queued = scheduler.submit(gate.work("queued", 1))
        with pytest.raises(OverloadedError):
            scheduler.check_room()
        await queued.aclose()
        assert scheduler.queue_depth == 0
        scheduler.check_room()
        gate.allowed.release(1)
        assert await collect(running) == ["run0"]
        assert "queued" not in gate.started
    finally:
        await scheduler.stop()


async def test_a_failing_sequence_raises_to_its_consumer() -> None:
    def broken(slot: str, cancelled: Callable[[], bool]) -> Iterator[str]:
        yield "x"
        raise ValueError("boom")

    scheduler = await started(GenerationScheduler(["slot"], max_queue=1))
    try:
        stream = scheduler.submit(broken)
        assert await stream.__anext__() == "x"
        with pytest.raises(ValueError, match="boom"):
            await stream.__anext__()
        assert await collect(scheduler.submit(fast("ok", 1))) == ["ok0"]
    finally:
        await scheduler.stop()
