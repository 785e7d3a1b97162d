"""What one short request costs over the model itself, measured in pairs.

Loads the backend the server runs (same runtime, same threads) in this
process, then for each of N short texts times, back to back, the backend's
own `embed` of that text and one HTTP request for it to the running
server (one keep-alive connection, base64 as openai-python asks), in
alternating order. The two halves of a pair run within milliseconds of
each other, so the machine's drift, which on a shared 2-core machine moves
the raw encode by 10-20% from minute to minute, cancels out.

    python bench/overhead.py --url http://127.0.0.1:8000 --model M [--requests 300]

prints one JSON line: p50/p99 of both, and the overhead (p50 of the server
minus p50 of the raw encode; also the median of the per-pair differences).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from corpus import short_texts
from served import default_model

WARM_UP = 20


def milliseconds(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    model, backend = default_model()
    texts = short_texts(WARM_UP + args.requests)
    sequences = model.tokenizer.encode(texts)

    url = urlsplit(args.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80)
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"

    def over_http(text: str) -> float:
        body = json.dumps({"model": args.model, "input": text, "encoding_format": "base64"})
        started = time.perf_counter()
        connection.request("POST", "/v1/embeddings", body, headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"the server answered {response.status}")
        return elapsed

    def raw(sequence: list[int]) -> float:
        started = time.perf_counter()
        backend.embed([sequence])
        return time.perf_counter() - started

    served: list[float] = []
    encoded: list[float] = []
    for index, (text, sequence) in enumerate(zip(texts, sequences, strict=True)):
        # Alternate which goes first, so neither always runs on a warmer cache.
        if index % 2:
            raw_seconds = raw(sequence)
            http_seconds = over_http(text)
        else:
            http_seconds = over_http(text)
            raw_seconds = raw(sequence)
        if index >= WARM_UP:
            encoded.append(raw_seconds)
            served.append(http_seconds)
    connection.close()
    backend.close()
    print(
        json.dumps(
            {
                "target": "single request overhead",
                "load1": round(os.getloadavg()[0], 2),
                "requests": len(served),
                "raw_p50_ms": milliseconds(encoded, 0.5),
                "raw_p99_ms": milliseconds(encoded, 0.99),
                "server_p50_ms": milliseconds(served, 0.5),
                "server_p99_ms": milliseconds(served, 0.99),
                "overhead_p50_ms": round(milliseconds(served, 0.5) - milliseconds(encoded, 0.5), 2),
                "paired_difference_p50_ms": round(
                    statistics.median(s - e for s, e in zip(served, encoded, strict=True)) * 1000,
                    2,
                ),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
