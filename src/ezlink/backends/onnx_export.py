"""Exporting a model to ONNX once, cached on disk.

The export is the torch `PoolingModel` itself (transformer + pooling in one
graph), so ONNX Runtime computes exactly what the torch backend computes.
The cache key covers the weights and every version that shapes the graph;
the file is written to a temporary name and renamed, so two processes
exporting at once never read half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

from ezlink.backends.model_files import ModelFiles

logger = logging.getLogger(__name__)

# Bump when the export itself changes (inputs, opset, pooling).
EXPORT_FORMAT = "1"
OPSET = 18
CACHE_DIR_ENV = "EZLINK_CACHE_DIR"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "ezlink"
    return base / "onnx"


def _fingerprint(files: ModelFiles) -> str:
    digest = hashlib.sha256()
    # Versions read from package metadata: importing torch only to hash its
    # version would cost a served model hundreds of MB of memory.
    for part in (EXPORT_FORMAT, *(version(name) for name in ("torch", "transformers", "onnx"))):
        digest.update(part.encode() + b"\0")
    digest.update(f"{files.directory.resolve()}:{files.pooling}".encode() + b"\0")
    for path in sorted(files.directory.rglob("*")):
        if path.is_file() and path.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            stat = path.stat()
            digest.update(f"{path.relative_to(files.directory)}:{stat.st_size}".encode())
            digest.update(str(int(stat.st_mtime)).encode() + b"\0")
    return digest.hexdigest()[:16]


def exported_model_path(files: ModelFiles) -> Path:
    """The cached ONNX file for this model, exporting it first if it is missing."""
    target = cache_dir() / f"{files.directory.name}-{_fingerprint(files)}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to ONNX (once): %s", files.directory.name, target)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".export-", suffix=".onnx")
    os.close(fd)
    try:
        _export(files, Path(temp_name))
        os.chmod(temp_name, 0o644)  # mkstemp's 0600 would hide it from other users
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return target


def _export(files: ModelFiles, destination: Path) -> None:
    import torch

    from ezlink.backends.torch_backend import PoolingModel

    model = PoolingModel(files).eval()
    example = torch.ones((2, 8), dtype=torch.int64)
    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example, example),
            str(destination),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            # The TorchScript exporter: the dynamo one (torch 2.13) wrote a
            # graph ONNX Runtime 1.32 refuses (a duplicate output name).
            dynamo=False,
            # One self-contained file: nothing beside it to rename atomically.
            external_data=False,
        )
