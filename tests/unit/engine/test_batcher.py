"""The batcher's scheduling, with a deterministic stand-in for the model.

The stand-in maps each token sequence to a vector computed from that
sequence alone, so a row that comes back in the wrong place, or from the
wrong request, shows.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from ezlink.backends.base import Vectors
from ezlink.config import BatchingConfig
from ezlink.engine.batcher import (
    PASS_LENGTH_STEP,
    PASS_MIN_ROWS,
    Batcher,
    pass_limits,
    split_by_length,
)
from ezlink.errors import InternalError, OverloadedError

DIMENSION = 3


def vector_of(sequence: Sequence[int]) -> list[float]:
    return [float(len(sequence)), float(sum(sequence)), float(sequence[0])]


class RecordingModel:
    """Runs batches like a model would, remembering each batch; can be held."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False

    def __call__(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        self.gate.wait(timeout=10)
        self.batches.append([list(seq) for seq in sequences])
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("model crashed")
        return np.array([vector_of(seq) for seq in sequences], dtype=np.float32)

    @property
    def inputs_run(self) -> int:
        return sum(len(batch) for batch in self.batches)


def make_batcher(model: RecordingModel, workers: int = 1, **config: int) -> Batcher:
    return Batcher(model, DIMENSION, BatchingConfig(**config), workers=workers)


async def wait_until_running(model: RecordingModel, batcher: Batcher) -> None:
    """Wait for the first batch to be taken (the model is held at its gate)."""
    for _ in range(1000):
        if batcher.stats.batches or batcher.running_batches:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("no batch started")


def sequences(count: int, start: int = 1, length: int = 4) -> list[list[int]]:
    return [[start + i] * (1 + (start + i) % length) for i in range(count)]


async def test_each_request_gets_its_own_rows_in_input_order() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, workers=2, max_batch_size=5)
    await batcher.start()
    requests = [sequences(n, start=100 * n) for n in range(1, 12)]
    results = await asyncio.gather(*(batcher.embed(seqs) for seqs in requests))
    await batcher.stop()
    for seqs, vectors in zip(requests, results, strict=True):
        assert vectors.tolist() == [vector_of(seq) for seq in seqs]


async def test_batches_stay_within_the_size_and_padded_token_budgets() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=4, max_batch_tokens=20)
    model.gate.clear()
    await batcher.start()
    first = asyncio.ensure_future(batcher.embed([[1]]))
    await wait_until_running(model, batcher)
    # Queued while the first batch runs: they are batched together afterwards.
    rest = [batcher.embed([[2] * length]) for length in (3, 9, 2, 5, 1, 7)]
    pending = asyncio.gather(*rest)
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, pending)
    await batcher.stop()
    for batch in model.batches:
        assert len(batch) <= 4
        assert len(batch) * max(len(seq) for seq in batch) <= 20 or len(batch) == 1
    assert batcher.stats.inputs == 7


async def test_a_small_request_is_not_starved_by_a_huge_one_ahead_of_it() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=8, inputs_per_turn=4)
    model.gate.clear()
    await batcher.start()
    huge = asyncio.ensure_future(batcher.embed(sequences(2048)))
    await wait_until_running(model, batcher)
    small = asyncio.ensure_future(batcher.embed([[7, 7]]))
    await asyncio.sleep(0.01)
    model.gate.set()
    await small
    await huge
    await batcher.stop()
    # The small request rode in the first batch formed after it arrived.
    ridden = next(n for n, batch in enumerate(model.batches) if [7, 7] in batch)
    assert ridden == 1


async def test_requests_are_served_whole_in_arrival_order_when_they_fit_a_turn() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=8, inputs_per_turn=4)
    model.gate.clear()
    await batcher.start()
    first = asyncio.ensure_future(batcher.embed([[1]]))
    await wait_until_running(model, batcher)
    crowd = [asyncio.ensure_future(batcher.embed([[n]] * 4)) for n in range(2, 8)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(first, *crowd)
    await batcher.stop()
    # Two whole requests per batch, first come first served.
    assert model.batches[1:] == [
        [[2]] * 4 + [[3]] * 4,
        [[4]] * 4 + [[5]] * 4,
        [[6]] * 4 + [[7]] * 4,
    ]


async def test_a_cancelled_request_has_its_queued_inputs_dropped_unrun() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=4)
    model.gate.clear()
    await batcher.start()
    leaving = asyncio.ensure_future(batcher.embed(sequences(100)))
    await wait_until_running(model, batcher)
    leaving.cancel()
    await asyncio.sleep(0.01)
    assert batcher.queued_tokens == 0
    model.gate.set()
    staying = await batcher.embed([[5]])
    await batcher.stop()
    assert staying.tolist() == [vector_of([5])]
    # Only the batch already running when the client left was run.
    assert model.inputs_run == 4 + 1
    assert batcher.stats.dropped_inputs == 96


async def test_a_full_queue_rejects_new_requests_at_once_with_retry_after() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=2, max_queue_tokens=50)
    model.gate.clear()
    await batcher.start()
    running = asyncio.ensure_future(batcher.embed([[1] * 10] * 2))
    await wait_until_running(model, batcher)
    queued = asyncio.ensure_future(batcher.embed([[1] * 10] * 5))
    await asyncio.sleep(0)
    assert batcher.queued_tokens == 50
    with pytest.raises(OverloadedError) as rejected:
        await batcher.embed([[1]])
    assert rejected.value.status_code == 503
    assert int(rejected.value.headers["Retry-After"]) >= 1
    assert batcher.stats.rejected_requests == 1
    # What was admitted is still served.
    model.gate.set()
    await asyncio.gather(running, queued)
    await batcher.stop()


async def test_a_request_larger_than_the_room_left_is_admitted_while_under_the_limit() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=1, max_queue_tokens=10)
    model.gate.clear()
    await batcher.start()
    running = asyncio.ensure_future(batcher.embed([[1]]))
    await wait_until_running(model, batcher)
    first = asyncio.ensure_future(batcher.embed([[2] * 9]))
    await asyncio.sleep(0)
    # 9 tokens queued, under the limit of 10: a big request still gets in,
    # so that big requests are not starved by a steady stream of small ones.
    big = asyncio.ensure_future(batcher.embed([[3] * 8] * 4))
    await asyncio.sleep(0)
    assert batcher.queued_tokens == 41
    with pytest.raises(OverloadedError):
        await batcher.embed([[4]])
    model.gate.set()
    await asyncio.gather(running, first, big)
    await batcher.stop()
    assert big.result().shape == (4, DIMENSION)


async def test_a_failed_batch_fails_its_requests_and_the_batcher_keeps_serving() -> None:
    model = RecordingModel()
    batcher = make_batcher(model)
    await batcher.start()
    model.fail_next = True
    with pytest.raises(InternalError):
        await batcher.embed([[1, 2]])
    assert (await batcher.embed([[1, 2]])).tolist() == [vector_of([1, 2])]
    await batcher.stop()


async def test_stop_finishes_what_was_admitted() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=3)
    await batcher.start()
    pending = asyncio.ensure_future(batcher.embed(sequences(10)))
    await asyncio.sleep(0)
    await batcher.stop()
    assert pending.done() and pending.result().shape == (10, DIMENSION)


def test_inputs_of_similar_length_form_one_part() -> None:
    assert split_by_length([20, 23, 21, 25, 22], 16, 512) == [[0, 2, 4, 1, 3]]


def test_a_batch_of_short_and_long_inputs_runs_as_parts_of_similar_length() -> None:
    lengths = [180, 5] * 10
    parts = split_by_length(lengths, 16, 100_000)
    assert [sorted(lengths[row] for row in part) for part in parts] == [[5] * 10, [180] * 10]


def test_no_part_pads_its_rows_by_more_than_the_length_step() -> None:
    lengths = list(range(10, 90))
    parts = split_by_length(lengths, 16, 100_000)
    assert len(parts) > 1
    for part in parts:
        widths = [lengths[row] for row in part]
        # A pass takes its first PASS_MIN_ROWS rows whatever their lengths.
        assert all(width <= PASS_LENGTH_STEP * widths[0] for width in widths[PASS_MIN_ROWS:])


def test_a_part_too_small_to_be_worth_a_pass_joins_its_neighbour() -> None:
    lengths = [5] * 10 + [100] * (PASS_MIN_ROWS - 1)
    assert split_by_length(lengths, 32, 100_000) == [list(range(len(lengths)))]


def test_a_wide_batch_runs_as_passes_of_at_most_max_pass_size() -> None:
    lengths = [7, 9, 8, 10] * 10
    parts = split_by_length(lengths, 16, 100_000)
    assert [len(part) for part in parts] == [16, 16, 8]
    assert sorted(row for part in parts for row in part) == list(range(40))
    assert [lengths[row] for part in parts for row in part] == sorted(lengths)


def test_long_inputs_run_a_few_at_a_time_under_the_pass_token_budget() -> None:
    lengths = [200] * 7
    parts = split_by_length(lengths, 16, 512)
    assert [len(part) for part in parts] == [2, 2, 2, 1]
    assert split_by_length([600], 16, 512) == [[0]]  # one input over the budget still runs


def test_passes_are_small_on_cpu_and_the_whole_batch_on_a_gpu_unless_configured() -> None:
    defaults = BatchingConfig()
    assert pass_limits(defaults, "cpu") == (16, 512)
    assert pass_limits(defaults, "cuda") == (defaults.max_batch_size, defaults.max_batch_tokens)
    chosen = BatchingConfig(max_pass_size=8, max_pass_tokens=4096)
    assert pass_limits(chosen, "cpu") == pass_limits(chosen, "cuda") == (8, 4096)


async def test_rows_run_in_parts_come_back_in_their_places() -> None:
    model = RecordingModel()
    batcher = make_batcher(model, max_batch_size=64, max_batch_tokens=100_000)
    await batcher.start()
    mixed = [[n] * (1 + (n * 37) % 64) for n in range(1, 49)]
    vectors = await batcher.embed(mixed)
    await batcher.stop()
    assert vectors.tolist() == [vector_of(seq) for seq in mixed]
    assert len(model.batches) > 1  # one batch, run as several parts
    assert batcher.stats.padded_tokens < len(mixed) * 64


class PacedModel:
    """A model whose runs take turns on one resource (as runs on shared cores do):
    `seconds_per_token` each, however many workers ask at once."""

    def __init__(self, seconds_per_token: float) -> None:
        self.seconds_per_token = seconds_per_token
        self.lock = threading.Lock()

    def __call__(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        with self.lock:
            time.sleep(self.seconds_per_token * sum(len(seq) for seq in sequences))
        return np.array([vector_of(seq) for seq in sequences], dtype=np.float32)


async def test_retry_after_is_the_measured_drain_time_within_a_factor_of_two() -> None:
    # 4 workers whose runs cannot overlap: 2000 tokens/s in all, not 4 x one run's pace.
    model = PacedModel(seconds_per_token=1 / 2000)
    batcher = make_batcher(model, workers=4, max_batch_size=4, max_queue_tokens=2400)
    await batcher.start()
    # Requests one at a time, then a burst: a lone run's pace times the
    # workers (the earlier estimate) promised 4 times the real drain rate.
    for _ in range(6):
        await batcher.embed([[1] * 50] * 4)
    waiting = [asyncio.ensure_future(batcher.embed([[1] * 50] * 4)) for _ in range(12)]
    await asyncio.sleep(0)
    with pytest.raises(OverloadedError) as rejected:
        await batcher.embed([[1]])
    estimate = batcher.estimated_wait_seconds()
    started = time.perf_counter()
    await asyncio.gather(*waiting)
    drained_in = time.perf_counter() - started
    await batcher.stop()
    assert drained_in / 2 <= estimate <= drained_in * 2, (estimate, drained_in)
    assert int(rejected.value.headers["Retry-After"]) == max(1, math.ceil(estimate))
