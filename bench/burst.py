"""A burst far above capacity: quick 503s, admitted requests served, memory bounded.

Opens `--requests` connections at once, each sending one 16-input request
(a single attempt, no retry), twice in a row, and samples the server's RSS
before, during and after. Prints one JSON line per burst.

    python bench/burst.py --url http://127.0.0.1:8000 --model M --pid SERVER_PID
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from corpus import short_texts
from load import Connection, percentile


async def burst(args: argparse.Namespace, server: psutil.Process, round_: int) -> dict[str, object]:
    texts = short_texts(args.requests * 16, seed=10 + round_)
    bodies = [
        json.dumps({"model": args.model, "input": texts[i * 16 : (i + 1) * 16]}).encode()
        for i in range(args.requests)
    ]
    rss_before = server.memory_info().rss
    peak = rss_before
    results: list[tuple[int, float]] = []

    async def one(body: bytes) -> None:
        connection = Connection(args.host, args.port, "/v1/embeddings", {})
        started = time.perf_counter()
        try:
            status, _ = await connection.post(body)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        finally:
            connection.close()
        results.append((status, time.perf_counter() - started))

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.memory_info().rss)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    await asyncio.gather(*(one(body) for body in bodies))
    elapsed = time.perf_counter() - started
    sampler.cancel()
    ok = [latency for status, latency in results if status == 200]
    refused = [latency for status, latency in results if status == 503]
    other = len(results) - len(ok) - len(refused)
    mib = 1024 * 1024
    return {
        "target": "ezlink burst",
        "round": round_,
        "requests": args.requests,
        "served_200": len(ok),
        "refused_503": len(refused),
        "other": other,
        "p50_503_ms": round(percentile(refused, 50) * 1000, 1),
        "p99_503_ms": round(percentile(refused, 99) * 1000, 1),
        "p50_200_ms": round(percentile(ok, 50) * 1000, 1),
        "p99_200_ms": round(percentile(ok, 99) * 1000, 1),
        "seconds": round(elapsed, 1),
        "rss_before_mib": round(rss_before / mib),
        "rss_peak_mib": round(peak / mib),
        "rss_after_mib": round(server.memory_info().rss / mib),
    }


async def http_floor(args: argparse.Namespace) -> dict[str, object]:
    """The same burst for an unknown model: 404s after auth and parsing, no model.

    What any answer costs on this event loop under this burst: the floor
    under the 503s' latency.
    """
    texts = short_texts(args.requests * 16, seed=9)
    latencies: list[float] = []

    async def one(index: int) -> None:
        body = json.dumps({"model": "no-such-model", "input": texts[index * 16 : (index + 1) * 16]})
        connection = Connection(args.host, args.port, "/v1/embeddings", {})
        started = time.perf_counter()
        try:
            await connection.post(body.encode())
        finally:
            connection.close()
        latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one(index) for index in range(args.requests)))
    return {
        "target": "ezlink burst floor",
        "requests": args.requests,
        "p50_404_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_404_ms": round(percentile(latencies, 99) * 1000, 1),
    }


async def main_async(args: argparse.Namespace) -> None:
    server = psutil.Process(args.pid)
    print(json.dumps(await http_floor(args)), flush=True)
    for round_ in range(args.rounds):
        print(json.dumps(await burst(args, server, round_)), flush=True)
        await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    host_port = args.url.split("://", 1)[-1].rstrip("/")
    args.host, _, port = host_port.partition(":")
    args.port = int(port or 80)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
