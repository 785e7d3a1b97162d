"""The raw limit: the served backend's own `embed`, in-process, no server.

Loads the default model exactly as `ezlink serve` does (same runtime, same
thread settings, as many side-by-side runs as the server's workers), then
runs pre-tokenized, length-sorted batches (as a perfect scheduler would
form them) at several batch sizes and reports the best: the most any
server can get out of this backend on this machine.

    python bench/raw_limit.py [--seconds 8] [--corpus short|mixed]

prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import mixed_texts, short_texts
from ezlink.backends.base import EmbeddingBackend
from ezlink.backends.model_files import ModelFiles
from served import default_model


def run_for(seconds: float, workers: int, embed, batches) -> tuple[int, int, float]:  # type: ignore[no-untyped-def]
    """Run batches on `workers` threads for about `seconds`; (texts, tokens, elapsed)."""
    texts = tokens = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    def loop(offset: int) -> tuple[int, int]:
        done_texts = done_tokens = 0
        index = offset
        while time.perf_counter() < deadline:
            batch = batches[index % len(batches)]
            embed(batch)
            done_texts += len(batch)
            done_tokens += sum(len(seq) for seq in batch)
            index += workers
        return done_texts, done_tokens

    with ThreadPoolExecutor(workers) as pool:
        for done_texts, done_tokens in pool.map(loop, range(workers)):
            texts += done_texts
            tokens += done_tokens
    return texts, tokens, time.perf_counter() - started


def compare_runtimes(files: ModelFiles, sequences: list[list[int]], seconds: float) -> None:
    """The runtime and thread layouts `auto` chooses between, at batch size 32."""
    from ezlink.backends.onnx_backend import OnnxBackend, cpu_count
    from ezlink.backends.torch_backend import TorchBackend

    cores = cpu_count()
    batches = [sequences[i : i + 32] for i in range(0, len(sequences), 32)]
    layouts: list[tuple[str, Callable[[], EmbeddingBackend], int]] = [
        (f"torch, {cores} threads", lambda: TorchBackend(files, device="cpu"), 1),
        (f"onnx, 1 run x {cores} threads", lambda: OnnxBackend(files, 1, cores), 1),
        (f"onnx, {cores} runs x 1 thread", lambda: OnnxBackend(files, cores, 1), cores),
    ]
    for label, make, workers in layouts:
        backend = make()
        backend.embed(batches[0])
        done_texts, done_tokens, elapsed = run_for(seconds, workers, backend.embed, batches)
        print(
            json.dumps(
                {
                    "target": "runtime choice",
                    "runtime": label,
                    "batch_size": 32,
                    "texts_per_s": round(done_texts / elapsed, 1),
                    "tokens_per_s": round(done_tokens / elapsed, 1),
                }
            ),
            flush=True,
        )
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--corpus", choices=("short", "mixed"), default="short")
    parser.add_argument("--label", default="raw limit")
    parser.add_argument(
        "--alternatives", action="store_true", help="also time torch and other ONNX layouts"
    )
    args = parser.parse_args()

    model, backend = default_model()
    workers = model.config.batching.workers or backend.suggested_workers()
    texts = short_texts(4096) if args.corpus == "short" else mixed_texts(4096)
    sequences = model.tokenizer.encode(texts)
    # The best case for the limit: batches of similar lengths, as a perfect
    # scheduler would form them (shuffled below, so that a few seconds of
    # them sample every length, not just the shortest).
    sequences.sort(key=len)
    backend.embed(sequences[:64])  # warm-up: allocations, lazy init

    results = []
    for size in (int(s) for s in args.batch_sizes.split(",")):
        batches = [sequences[i : i + size] for i in range(0, len(sequences), size)]
        random.Random(0).shuffle(batches)
        done_texts, done_tokens, elapsed = run_for(args.seconds, workers, backend.embed, batches)
        result = {
            "target": args.label,
            "load1": round(os.getloadavg()[0], 2),
            "runtime": backend.name,
            "workers": workers,
            "corpus": args.corpus,
            "batch_size": size,
            "texts_per_s": round(done_texts / elapsed, 1),
            "tokens_per_s": round(done_tokens / elapsed, 1),
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    if len(results) > 1:
        best = max(results, key=lambda r: float(r["texts_per_s"]))  # type: ignore[arg-type]
        print(json.dumps({**best, "target": f"{args.label} (best)"}), flush=True)

    if args.alternatives:
        compare_runtimes(model.files, sequences, args.seconds)

    backend.close()


if __name__ == "__main__":
    main()
