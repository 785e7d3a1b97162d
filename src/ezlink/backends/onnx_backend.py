"""ONNX Runtime on CPU: the fastest CPU runtime measured (see bench/README.md).

On this kind of machine several single-threaded runs side by side beat one
run spread over every core: a small model's operators are too short to keep
many threads busy, and ONNX Runtime releases the GIL while it runs, so the
batcher's worker threads each run a batch on a core of their own. One
session is shared by them (its `run` is thread-safe), which keeps one copy
of the weights.

A run that finds no other in flight (a lone request on an idle server)
goes to a second session that spreads it over every core instead: one
short text took 7.6 ms on one thread and 5.0 ms on two (2-core machine).
Under load the runs overlap and take the single-threaded session, so the
cores are not oversubscribed. The price is the second session's memory
(about 1.2x the weights: each session packs its own copy).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ezlink.backends.base import EmbeddingBackend, Vectors, pad_batch
from ezlink.backends.model_files import ModelFiles
from ezlink.backends.onnx_export import exported_model_path


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads would steal the cores the other runs work on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_count() -> int:
    """Cores this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxBackend(EmbeddingBackend):
    name = "onnx"

    def __init__(self, files: ModelFiles, parallel_runs: int = 0, threads_per_run: int = 1) -> None:
        self.dimension = files.dimension
        self._pad_id = files.pad_token_id
        cores = cpu_count()
        self._parallel_runs = parallel_runs or max(1, cores // threads_per_run)
        path = exported_model_path(files)
        self._session = _session(path, threads_per_run)
        self._lone_session = (
            _session(path, cores) if self._parallel_runs > 1 and cores > threads_per_run else None
        )
        self._runs_in_flight = 0
        self._lock = threading.Lock()

    def embed(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        ids, mask = pad_batch(sequences, self._pad_id)
        with self._lock:
            alone = self._runs_in_flight == 0
            self._runs_in_flight += 1
        session = self._lone_session if alone and self._lone_session else self._session
        try:
            (pooled,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        finally:
            with self._lock:
                self._runs_in_flight -= 1
        return np.asarray(pooled, dtype=np.float32)

    @property
    def lone_run_threads(self) -> int:
        """Threads a run gets when no other is in flight."""
        session = self._lone_session or self._session
        return int(session.get_session_options().intra_op_num_threads)

    def suggested_workers(self) -> int:
        return self._parallel_runs
