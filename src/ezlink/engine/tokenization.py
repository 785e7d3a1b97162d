"""The model's own tokenizer: counts tokens and prepares inputs for the queue."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


class ModelTokenizer:
    """Wraps a Hugging Face fast tokenizer with padding and truncation off.

    Shipped tokenizer.json files often pad and truncate to a fixed length;
    the engine pads per batch and decides on truncation itself.
    """

    def __init__(self, model_dir: Path, truncate_to: int | None = None) -> None:
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        if truncate_to is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(max_length=truncate_to)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids, special tokens included: what the model runs and what usage counts."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]
