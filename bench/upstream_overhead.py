"""What the gateway adds on top of an upstream: latency per request, side by side.

Starts the fake upstream (tests/support/fault_upstream.py, deterministic vectors)
and an ezlink gateway routed to it, then sends the same requests to both, one
at a time, and prints p50/p99 for each and the gateway's added milliseconds.

    .venv/bin/python bench/upstream_overhead.py [--requests 300] [--inputs 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.fault_upstream import FaultUpstream, wait_until_ready
from tests.support.server import ServerProcess, write_config

KEY = "sk-bench-upstream-overhead-000000"


def timings(client: httpx.Client, url: str, body: dict[str, Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
        out.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--inputs", type=int, default=16)
    args = parser.parse_args()
    texts = [f"benchmark input number {i}, a short sentence" for i in range(args.inputs)]
    with FaultUpstream() as fault:
        config = write_config(
            {
                "upstreams": [
                    {"name": "fake", "base_url": fault.api_url, "model": "ok", "kind": "openai"}
                ],
                "models": [{"kind": "upstream", "id": "fake", "routes": [{"upstream": "fake"}]}],
            }
        )
        with ServerProcess(config=config, master_key=KEY) as front, httpx.Client() as client:
            wait_until_ready(front.base_url)
            body = {"model": "ok", "input": texts, "encoding_format": "float"}
            routed = {**body, "model": "fake"}
            timings(client, front.api_url + "/embeddings", routed, 20)  # warm-up
            direct = summary(timings(client, fault.api_url + "/embeddings", body, args.requests))
            gateway = summary(timings(client, front.api_url + "/embeddings", routed, args.requests))
    print(
        json.dumps(
            {
                "requests": args.requests,
                "inputs_per_request": args.inputs,
                "direct": direct,
                "through_gateway": gateway,
                "added_p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
