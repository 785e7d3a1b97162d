"""Load generator: many keep-alive HTTP/1.1 clients on one asyncio loop.

A hand-written client rather than httpx: on a 2-core machine the load
generator shares the CPU with the server it measures, and this one costs
a fraction of httpx per request, so more of the CPU is left to the server.
It only reads the status and the body's length; it never decodes vectors.

    python bench/load.py --url http://127.0.0.1:8000 --model M --scenario short16 ...

prints one JSON line: texts/s, tokens/s, p50/p99 latency, status counts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from corpus import mixed_texts, short_texts

SCENARIOS = {
    # name: (corpus, inputs per request)
    "single": ("short", 1),
    "short16": ("short", 16),
    "mixed16": ("mixed", 16),
}


class Connection:
    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.host, self.port, self.path = host, port, path
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, int]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status, length

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def token_counts(texts: list[str], model_dir: str | None) -> list[int]:
    if not model_dir:
        return [0] * len(texts)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


async def run(args: argparse.Namespace) -> dict[str, object]:
    corpus, per_request = SCENARIOS[args.scenario]
    texts = short_texts(4096) if corpus == "short" else mixed_texts(4096)
    tokens = token_counts(texts, args.model_dir)
    requests = []
    for start in range(0, len(texts) - per_request + 1, per_request):
        chunk = texts[start : start + per_request]
        payload = {"model": args.model, "input": chunk if per_request > 1 else chunk[0]}
        if args.encoding_format:
            payload["encoding_format"] = args.encoding_format
        requests.append(
            (json.dumps(payload).encode(), per_request, sum(tokens[start : start + per_request]))
        )
    url = urlsplit(args.url)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    source = itertools.cycle(requests)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    done = {"texts": 0, "tokens": 0}
    measuring = False

    async def client() -> None:
        connection = Connection(
            url.hostname or "127.0.0.1", url.port or 80, "/v1/embeddings", headers
        )
        try:
            while not stop.is_set():
                body, count, token_count = next(source)
                started = time.perf_counter()
                try:
                    status, _ = await connection.post(body)
                except (OSError, asyncio.IncompleteReadError):
                    connection.close()
                    status = 0
                if not measuring:
                    continue
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                    done["texts"] += count
                    done["tokens"] += token_count
        finally:
            connection.close()

    stop = asyncio.Event()
    tasks = [asyncio.create_task(client()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    before = await scrape(args.url) if args.metrics else {}
    measuring = True
    started = time.perf_counter()
    await asyncio.sleep(args.duration)
    measuring = False
    elapsed = time.perf_counter() - started
    after = await scrape(args.url) if args.metrics else {}
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    return {
        "target": args.label,
        "load1": round(os.getloadavg()[0], 2),
        "scenario": args.tag or args.scenario,
        "concurrency": args.concurrency,
        "texts_per_s": round(done["texts"] / elapsed, 1),
        "tokens_per_s": round(done["tokens"] / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "statuses": statuses,
        **batching(before, after, done["tokens"]),
    }


async def scrape(url: str) -> dict[str, float]:
    """ezlink's batch counters from /metrics (summed over models)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode("utf-8", "replace")
    writer.close()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("ezlink_batches_total", "ezlink_batch_padded_tokens_total"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def batching(before: dict[str, float], after: dict[str, float], tokens: int) -> dict[str, float]:
    """Mean batch size and the share of computed tokens that were real (not padding)."""
    if not before or not after:
        return {}
    batches = after.get("ezlink_batches_total", 0) - before.get("ezlink_batches_total", 0)
    padded = after.get("ezlink_batch_padded_tokens_total", 0) - before.get(
        "ezlink_batch_padded_tokens_total", 0
    )
    return {
        "batches": batches,
        "real_token_share": round(tokens / padded, 2) if padded else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--label", default="server")
    parser.add_argument("--key", default="")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="short16")
    parser.add_argument("--tag", default="", help="the scenario's name in the results")
    parser.add_argument("--metrics", action="store_true", help="read ezlink's batch counters")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    # What openai-python asks for by default.
    parser.add_argument("--encoding-format", default="base64")
    parser.add_argument("--model-dir", default="", help="tokenizer.json here counts tokens/s")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
