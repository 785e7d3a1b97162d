"""What the accounts add per request: the master key vs issued keys, side by side.

Starts one `ezlink serve` (SQLite accounts database in a temp dir, or
EZLINK_DATABASE_URL / EZLINK_REDIS_URL as set), issues a key with no limits
and one with rpm, tpm and a quota (the most work: key lookup, bucket take,
atomic quota charge), then sends the same short request with each key in
turn, one at a time, and prints p50/p99 and the milliseconds each adds.

    .venv/bin/python bench/accounts_overhead.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.server import ServerProcess

MASTER = "sk-bench-accounts-master-00000000"
BODY = {"model": "text-embedding-3-small", "input": "the quick brown fox"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    env = {"EZLINK_DATA_DIR": tempfile.mkdtemp(prefix="ezlink-bench-accounts-")}
    with ServerProcess(master_key=MASTER, env=env) as server, httpx.Client(timeout=60) as client:

        def issue(**limits: int) -> str:
            response = client.post(
                server.base_url + "/admin/keys",
                json={"name": "bench", **limits},
                headers=server.headers(),
            )
            return str(response.json()["key"])

        keys = {
            "master": MASTER,
            "issued": issue(),
            "limited": issue(rpm=10**6, tpm=10**9, quota_tokens=10**12),
        }
        ms: dict[str, list[float]] = {name: [] for name in keys}
        for _ in range(args.requests):
            for name, key in keys.items():  # interleaved: drift hits all alike
                started = time.perf_counter()
                response = client.post(
                    server.api_url + "/embeddings",
                    json=BODY,
                    headers={"Authorization": f"Bearer {key}"},
                )
                ms[name].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    base = statistics.median(ms["master"])
    for name, values in ms.items():
        print(
            json.dumps(
                {
                    "target": f"accounts_{name}",
                    "requests": len(values),
                    "p50_ms": round(statistics.median(values), 2),
                    "p99_ms": round(percentile(values, 0.99), 2),
                    "added_p50_ms": round(statistics.median(values) - base, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
