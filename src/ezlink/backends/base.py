"""The one small interface every local runtime implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbeddingBackend(ABC):
    """Runs a model on a batch of tokenized inputs.

    ``embed`` is called from worker threads, possibly several at once, so
    implementations must be thread-safe; it returns the pooled (not yet
    normalized) float32 vectors, one row per input, in input order.
    """

    name: str
    dimension: int
    # Where it runs: "cpu" or "cuda" (batching picks its pass sizes by it).
    device: str = "cpu"

    @abstractmethod
    def embed(self, sequences: Sequence[Sequence[int]]) -> Vectors: ...

    def suggested_workers(self) -> int:
        """How many batches may usefully run at once."""
        return 1

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds."""


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Right-pad token id lists into (input_ids, attention_mask) arrays."""
    width = max(len(seq) for seq in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
