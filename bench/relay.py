"""The relay benchmark: what a gateway adds in front of a fast chat upstream.

    .venv/bin/python bench/relay.py [--requests 300] [--saturation 3000] [--repeats 3]

Starts, on loopback ports, the fast upstream (``bench/fast_upstream.py``), an
``ezlink serve`` whose only model is a ``kind: upstream`` chat model routed to
it, and the LiteLLM proxy (``bench/.venv-litellm``, one worker, no database,
offline) with the same upstream; then, in one run and the same machine state:

* **latency** (non-stream, one client): N requests to each target, sent in
  turn (direct, ezlink, LiteLLM, rotating who goes first), so that the three
  samples interleave and the machine's drift cancels out; p50/p99, and what
  each proxy adds over direct;
* **time to first token** (``stream: true``, one client): the same, timed to
  the first chunk with content;
* **saturation** (non-stream, ``--concurrency`` clients, a fixed number of
  requests per target, back to back): requests/s, latency p50/p99, and CPU
  seconds per request of the proxy's process (its children included), of
  the upstream and of this client.

Latency and TTFT use httpx (what a Python client would); the saturation
load uses the hand-written keep-alive client of ``bench/load.py``, which
costs a fraction of httpx per request, so that on 2 cores more of the CPU
is left to the servers it measures. Prints JSON lines, then a summary with
the ratios ezlink added / LiteLLM added. Without LiteLLM (not installable,
or not starting offline) it says why and measures ezlink against direct.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.support.server import ServerProcess, free_port, write_config  # noqa: E402

from load import Connection  # noqa: E402

KEY = "sk-bench-relay-0000000000000000"
UPSTREAM_KEY = "sk-fast-upstream-key"
MODEL = "relay-chat"
UPSTREAM_MODEL = "fast-chat"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
# A phase that runs past this many seconds stops there and says so.
PHASE_LIMIT_S = 180.0


class Target:
    """One place to send requests: a base URL, and the process(es) whose CPU is its cost."""

    def __init__(self, name: str, base_url: str, model: str, pid: int | None) -> None:
        self.name, self.base_url, self.model, self.pid = name, base_url, model, pid

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    def body(self, stream: bool) -> bytes:
        return json.dumps({"model": self.model, "messages": MESSAGES, "stream": stream}).encode()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and its children (a proxy's workers)."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = 0.0
        for p in [process, *process.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def ms(value: float) -> float:
    return round(value * 1000, 3)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------- processes


def start_upstream(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200,
        process,
        20,
        "the fast upstream",
    )
    return process


def start_ezlink(
    upstream_url: str, workdir: Path, log_level: str, max_concurrency: int
) -> ServerProcess:
    upstream: dict[str, Any] = {
        "name": "fast",
        "base_url": upstream_url,
        "api_key_env": "FAST_UPSTREAM_KEY",
        "model": UPSTREAM_MODEL,
        "kind": "openai",
    }
    if max_concurrency:
        upstream["max_concurrency"] = max_concurrency
    config = write_config(
        {
            "upstreams": [upstream],
            # Only the relay model: no local model is loaded.
            "models": [{"kind": "upstream", "id": MODEL, "routes": [{"upstream": "fast"}]}],
        },
        workdir,
    )
    server = ServerProcess(
        config=config,
        env={"FAST_UPSTREAM_KEY": UPSTREAM_KEY, "EZLINK_DATA_DIR": str(workdir / "data")},
        args=["--log-level", log_level],
        master_key=KEY,
    )
    return server.start()


def start_litellm(
    upstream_url: str, workdir: Path, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """The LiteLLM proxy, offline: local cost map, no telemetry, no database, one worker."""
    config = workdir / "litellm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{UPSTREAM_MODEL}",
                            "api_base": upstream_url,
                            "api_key": UPSTREAM_KEY,
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "set_verbose": False},
                "general_settings": {"master_key": KEY},
            }
        ),
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "True",
        "NO_DOCS": "True",
    }
    for name in ("DATABASE_URL", "LITELLM_MASTER_KEY", "OPENAI_API_KEY", "REDIS_URL"):
        env.pop(name, None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(LITELLM_VENV / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
                "--telemetry",
                "False",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": MODEL, "messages": MESSAGES}

    def answers() -> bool:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        return httpx.post(url, json=body, headers=headers, timeout=5).status_code == 200

    wait_for(answers, process, 180, "LiteLLM", log)
    return process, port


def wait_for(
    check: Callable[[], bool],
    process: subprocess.Popen[bytes],
    seconds: float,
    what: str,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{what} exited with {process.returncode}: {tail}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer in {seconds:.0f}s")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------- measures


async def one_whole(client: httpx.AsyncClient, target: Target) -> float:
    started = time.perf_counter()
    response = await client.post(target.url, content=target.body(False))
    await response.aread()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{target.name}: {response.status_code} {response.text[:300]}")
    return elapsed


async def one_stream(client: httpx.AsyncClient, target: Target) -> tuple[float, float]:
    """(seconds to the first chunk with content, seconds to the end of the stream)."""
    started = time.perf_counter()
    first = None
    async with client.stream("POST", target.url, content=target.body(True)) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"{target.name}: {response.status_code} {response.text[:300]}")
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    total = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"{target.name}: a stream without content")
    return first, total


async def interleaved(
    targets: list[Target], requests: int, stream: bool, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """One client per target, one request at a time, the targets in turn."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    clients = {t.name: httpx.AsyncClient(headers=headers, timeout=30) for t in targets}
    samples: dict[str, dict[str, list[float]]] = {
        t.name: {"first": [], "total": []} for t in targets
    }
    deadline = time.monotonic() + PHASE_LIMIT_S
    try:
        for i in range(-warmup, requests):
            if time.monotonic() > deadline:
                print(
                    json.dumps(
                        {"target": "note", "text": f"phase stopped at {i} requests: time limit"}
                    )
                )
                break
            shift = i % len(targets)
            for target in targets[shift:] + targets[:shift]:
                client = clients[target.name]
                if stream:
                    first, total = await one_stream(client, target)
                else:
                    first = total = await one_whole(client, target)
                if i >= 0:
                    samples[target.name]["first"].append(first)
                    samples[target.name]["total"].append(total)
    finally:
        for client in clients.values():
            await client.aclose()
    return samples


async def saturate(
    target: Target, upstream_pid: int, requests: int, concurrency: int
) -> dict[str, Any]:
    """`requests` whole answers through `concurrency` keep-alive clients; CPU before/after."""
    parts = urlsplit(target.base_url)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = target.body(False)
    remaining = {"warmup": 2 * concurrency, "measured": requests}
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(take: str) -> None:
        connection = Connection(
            parts.hostname or "127.0.0.1", parts.port or 80, "/v1/chat/completions", headers
        )
        try:
            while remaining[take] > 0 and time.monotonic() < deadline:
                remaining[take] -= 1
                started = time.perf_counter()
                try:
                    status, _ = await connection.post(body)
                except (OSError, asyncio.IncompleteReadError):
                    connection.close()
                    status = 0
                if take == "measured":
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    deadline = time.monotonic() + PHASE_LIMIT_S
    await asyncio.gather(*(client("warmup") for _ in range(concurrency)))
    me = psutil.Process()
    cpu = (cpu_seconds(target.pid), cpu_seconds(upstream_pid), sum(me.cpu_times()[:2]))
    started = time.perf_counter()
    await asyncio.gather(*(client("measured") for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    after = (cpu_seconds(target.pid), cpu_seconds(upstream_pid), sum(me.cpu_times()[:2]))
    done = sum(statuses.values())
    return {
        "target": target.name,
        "measure": "saturation",
        "concurrency": concurrency,
        "requests": done,
        "statuses": statuses,
        "rps": round(done / elapsed, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "proxy_cpu_ms_per_request": round((after[0] - cpu[0]) / done * 1000, 3)
        if target.pid
        else None,
        "upstream_cpu_ms_per_request": round((after[1] - cpu[1]) / done * 1000, 3),
        "client_cpu_ms_per_request": round((after[2] - cpu[2]) / done * 1000, 3),
        "load1": load1(),
    }


def latency_lines(
    samples: dict[str, dict[str, list[float]]], measure: str, key: str, repeat: int
) -> list[dict[str, Any]]:
    direct = samples["direct"][key]
    lines = []
    for name, sample in samples.items():
        values = sample[key]
        line: dict[str, Any] = {
            "target": name,
            "measure": measure,
            "repeat": repeat,
            "requests": len(values),
            "p50_ms": ms(percentile(values, 50)),
            "p99_ms": ms(percentile(values, 99)),
            "load1": load1(),
        }
        if name != "direct":
            line["added_p50_ms"] = round(line["p50_ms"] - ms(percentile(direct, 50)), 3)
            line["added_p99_ms"] = round(line["p99_ms"] - ms(percentile(direct, 99)), 3)
            # Request i of each target ran right after (or before) request i of direct.
            pairs = [a - b for a, b in zip(values, direct, strict=False)]
            line["median_pair_difference_ms"] = ms(statistics.median(pairs))
        lines.append(line)
    return lines


# ---------------------------------------------------------------- run


def emit(line: dict[str, Any], out: Any) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if out is not None:
        out.write(text + "\n")
        out.flush()


def summarize(lines: list[dict[str, Any]], peer: bool) -> list[str]:
    def values(target: str, measure: str, field: str) -> list[float]:
        return [
            line[field]
            for line in lines
            if line.get("target") == target
            and line.get("measure") == measure
            and line.get(field) is not None
        ]

    def spread(numbers: list[float]) -> str:
        if not numbers:
            return "n/a"
        if len(numbers) == 1:
            return f"{numbers[0]:.3g}"
        return f"{statistics.median(numbers):.3g} ({min(numbers):.3g}-{max(numbers):.3g})"

    def ratios(field: str, measure: str) -> list[float]:
        ez, peer_values = values("ezlink", measure, field), values("litellm", measure, field)
        return [a / b for a, b in zip(ez, peer_values, strict=False) if b]

    out = ["relay summary: median of the repeats (min-max); ms unless said"]
    names = ["direct", "ezlink"] + (["litellm"] if peer else [])
    for name in names:
        out.append(
            f"  {name:8s} latency p50 {spread(values(name, 'latency', 'p50_ms'))}"
            f"  p99 {spread(values(name, 'latency', 'p99_ms'))}"
            f"  | ttft p50 {spread(values(name, 'ttft', 'p50_ms'))}"
            f"  p99 {spread(values(name, 'ttft', 'p99_ms'))}"
            f"  | {spread(values(name, 'saturation', 'rps'))} req/s"
            f"  | proxy CPU/request {spread(values(name, 'saturation', 'proxy_cpu_ms_per_request'))}"
        )
    for name in names[1:]:
        out.append(
            f"  {name:8s} added: latency p50 {spread(values(name, 'latency', 'added_p50_ms'))}"
            f" p99 {spread(values(name, 'latency', 'added_p99_ms'))}"
            f" (median pair difference {spread(values(name, 'latency', 'median_pair_difference_ms'))})"
            f"; ttft p50 {spread(values(name, 'ttft', 'added_p50_ms'))}"
            f" p99 {spread(values(name, 'ttft', 'added_p99_ms'))}"
        )
    if peer:
        out.append(
            "  ezlink / LiteLLM: added latency p50 "
            f"{spread(ratios('added_p50_ms', 'latency'))}"
            f", p99 {spread(ratios('added_p99_ms', 'latency'))}"
            f"; added ttft p50 {spread(ratios('added_p50_ms', 'ttft'))}"
            f"; req/s at saturation {spread(ratios('rps', 'saturation'))}"
            f"; CPU per request {spread(ratios('proxy_cpu_ms_per_request', 'saturation'))}"
        )
        added = ratios("added_p50_ms", "latency")
        ttft = values("ezlink", "ttft", "added_p50_ms")
        out.append(
            f"  goals: ezlink added p50 <= 1/3 of LiteLLM's: {spread(added)}"
            f" ({'met' if added and statistics.median(added) <= 1 / 3 else 'not met'});"
            f" ezlink added ttft p50 <= 1 ms: {spread(ttft)}"
            f" ({'met' if ttft and statistics.median(ttft) <= 1 else 'not met'})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--requests", type=int, default=300, help="per target, per repeat, one client"
    )
    parser.add_argument(
        "--saturation", type=int, default=3000, help="requests per target at saturation"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-litellm", action="store_true", help="ezlink against direct only")
    parser.add_argument("--ezlink-log-level", default="warning")
    parser.add_argument(
        "--ezlink-max-concurrency",
        type=int,
        default=0,
        help="the upstream's max_concurrency (0: ezlink's default, 8)",
    )
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    # A SIGTERM (a bounded run's timeout) still stops the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out.open("a", encoding="utf-8") if args.out else None
    workdir = Path(tempfile.mkdtemp(prefix="ezlink-relay-"))
    upstream = litellm = None
    ezlink: ServerProcess | None = None
    lines: list[dict[str, Any]] = []
    try:
        emit(
            {"target": "note", "text": f"uptime at start: load1 {load1()}, {os.cpu_count()} cores"},
            out,
        )
        port = free_port()
        upstream = start_upstream(port, workdir / "upstream.log")
        upstream_url = f"http://127.0.0.1:{port}/v1"
        ezlink = start_ezlink(
            upstream_url, workdir, args.ezlink_log_level, args.ezlink_max_concurrency
        )
        targets = [
            Target("direct", f"http://127.0.0.1:{port}", UPSTREAM_MODEL, None),
            Target(
                "ezlink", ezlink.base_url, MODEL, ezlink.process.pid if ezlink.process else None
            ),
        ]
        peer = False
        if args.no_litellm:
            emit({"target": "note", "text": "LiteLLM skipped (--no-litellm)"}, out)
        elif not (LITELLM_VENV / "bin" / "litellm").exists():
            emit(
                {
                    "target": "note",
                    "text": f"LiteLLM not installed in {LITELLM_VENV}: "
                    "python3 -m venv bench/.venv-litellm && "
                    "bench/.venv-litellm/bin/pip install 'litellm[proxy]'",
                },
                out,
            )
        else:
            try:
                litellm, litellm_port = start_litellm(
                    upstream_url, workdir, workdir / "litellm.log"
                )
                targets.append(
                    Target("litellm", f"http://127.0.0.1:{litellm_port}", MODEL, litellm.pid)
                )
                peer = True
            except RuntimeError as error:
                emit({"target": "note", "text": f"LiteLLM did not start: {error}"}, out)
        for repeat in range(args.repeats):
            for measure, stream in (("latency", False), ("ttft", True)):
                samples = asyncio.run(interleaved(targets, args.requests, stream, args.warmup))
                for line in latency_lines(samples, measure, "first", repeat):
                    if stream:
                        line["stream_total_p50_ms"] = ms(
                            percentile(samples[line["target"]]["total"], 50)
                        )
                    lines.append(line)
                    emit(line, out)
            shift = repeat % len(targets)
            for target in targets[shift:] + targets[:shift]:
                line = asyncio.run(
                    saturate(target, upstream.pid, args.saturation, args.concurrency)
                )
                line["repeat"] = repeat
                lines.append(line)
                emit(line, out)
        emit({"target": "note", "text": f"uptime at end: load1 {load1()}"}, out)
        for text in summarize(lines, peer):
            print(text)
            if out is not None:
                out.write(json.dumps({"target": "summary", "text": text}) + "\n")
    finally:
        stop(litellm)
        if ezlink is not None:
            ezlink.stop()
        stop(upstream)
        if out is not None:
            out.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
