"""ONNX Runtime on CPU: the fastest CPU runtime measured (see bench/README.md).

On this kind of machine several single-threaded runs side by side beat one
run spread over every core: a small model's operators are too short to keep
many threads busy, and ONNX Runtime releases the GIL while it runs, so the
batcher's worker threads each run a batch on a core of their own. One
session is shared by them (its `run` is thread-safe), which keeps one copy
of the weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from ezlink.backends.base import EmbeddingBackend, Vectors, pad_batch
from ezlink.backends.model_files import ModelFiles
from ezlink.backends.onnx_export import exported_model_path


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
        self._parallel_runs = parallel_runs or max(1, cpu_count() // threads_per_run)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads_per_run
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads would steal the cores the other runs work on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(exported_model_path(files)), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        ids, mask = pad_batch(sequences, self._pad_id)
        (pooled,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(pooled, dtype=np.float32)

    def suggested_workers(self) -> int:
        return self._parallel_runs
