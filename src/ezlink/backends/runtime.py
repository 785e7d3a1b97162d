"""Which runtime and device serve a local model.

`auto` picks what measured fastest (bench/README.md): torch in fp16 on a
CUDA GPU; ONNX Runtime on CPU, where it runs about twice as fast as torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ezlink.errors import ConfigError

Runtime = Literal["torch", "onnx"]
Device = Literal["cpu", "cuda"]

# Present only where an NVIDIA driver is loaded: a cheap test that spares a
# CPU-only server the import of torch (seconds, and hundreds of MB).
NVIDIA_DRIVER_MARKERS = (Path("/proc/driver/nvidia/version"), Path("/dev/nvidiactl"))


def cuda_available() -> bool:
    if not any(marker.exists() for marker in NVIDIA_DRIVER_MARKERS):
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_runtime(runtime: str, device: str) -> tuple[Runtime, Device]:
    """The (runtime, device) pair for a model's `runtime` and `device` settings."""
    if device == "auto":
        resolved: Device = "cuda" if runtime != "onnx" and cuda_available() else "cpu"
    elif device == "cuda":
        resolved = "cuda"
    else:
        resolved = "cpu"
    if runtime == "onnx":
        if resolved == "cuda":
            raise ConfigError("runtime `onnx` runs on CPU only; use runtime `torch` on CUDA")
        return "onnx", "cpu"
    if runtime == "torch":
        return "torch", resolved
    return ("torch" if resolved == "cuda" else "onnx"), resolved
