"""PyTorch runtime (transformers); fp16 on CUDA."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModel

from ezlink.backends.base import EmbeddingBackend, Vectors, pad_batch
from ezlink.backends.model_files import ModelFiles
from ezlink.backends.runtime import Device


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Reduce token states to one vector per input, as the model was trained."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class PoolingModel(torch.nn.Module):
    """The transformer followed by its pooling: one module to run or export."""

    def __init__(self, files: ModelFiles) -> None:
        super().__init__()
        self.transformer = AutoModel.from_pretrained(files.directory, local_files_only=True)
        self.pooling = files.pooling
        self.uses_token_type_ids = files.uses_token_type_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.uses_token_type_ids else {}
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return pool(out.last_hidden_state, attention_mask, self.pooling)


class TorchBackend(EmbeddingBackend):
    name = "torch"

    def __init__(self, files: ModelFiles, device: Device = "cpu") -> None:
        # Resolved by backends.runtime.choose_runtime: "cpu" or "cuda", never "auto".
        self.device = device
        self.dimension = files.dimension
        self._pad_id = files.pad_token_id
        model = PoolingModel(files).eval().to(self.device)
        self._model = model.half() if self.device == "cuda" else model

    def embed(self, sequences: Sequence[Sequence[int]]) -> Vectors:
        ids, mask = pad_batch(sequences, self._pad_id)
        with torch.inference_mode():
            pooled = self._model(
                torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
            )
        vectors: Vectors = pooled.float().cpu().numpy()
        return vectors
