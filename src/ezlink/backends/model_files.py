"""Finding a sentence-transformers model on disk and reading what it declares."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ezlink.errors import ConfigError

# Weights never come from a hub at run time: a miss must fail at once, not
# after a minute of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class ModelFiles:
    directory: Path
    dimension: int
    pooling: str
    max_seq_length: int
    pad_token_id: int
    uses_token_type_ids: bool


def locate_model(path: Path | None, package: str | None) -> Path:
    """The model directory, from an explicit path or a package that ships one."""
    if path is not None:
        directory = path.expanduser()
    else:
        assert package is not None
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ConfigError(f"model package `{package}` is not installed") from exc
        getter = getattr(module, "get_model_path", None)
        module_dir = Path(module.__file__ or ".").parent
        directory = Path(getter()) if callable(getter) else module_dir / "model"
    if not (directory / "config.json").is_file():
        raise ConfigError(f"no model (config.json) in {directory}")
    return directory


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def read_model_files(directory: Path) -> ModelFiles:
    config = _json(directory / "config.json")
    pooling_config = _json(directory / "1_Pooling" / "config.json")
    st_config = _json(directory / "sentence_bert_config.json")
    pooling = next((mode for key, mode in POOLING_MODES.items() if pooling_config.get(key)), "mean")
    dimension = int(pooling_config.get("word_embedding_dimension") or config["hidden_size"])
    positions = int(config.get("max_position_embeddings", 512))
    return ModelFiles(
        directory=directory,
        dimension=dimension,
        pooling=pooling,
        max_seq_length=int(st_config.get("max_seq_length") or positions),
        pad_token_id=int(config.get("pad_token_id") or 0),
        uses_token_type_ids=int(config.get("type_vocab_size", 0)) > 0,
    )
