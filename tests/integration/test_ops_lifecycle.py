"""A real server's life: not ready while the model loads, then a graceful SIGTERM."""

from __future__ import annotations

import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai

from ezlink.backends.model_files import locate_model
from ezlink.config import DEFAULT_MODEL_PACKAGE
from tests.support.metrics import scrape
from tests.support.server import STARTUP_TIMEOUT_S, ServerProcess, write_config

MASTER_KEY = "sk-test-ops-lifecycle-0123456789"
MODEL = "text-embedding-ada-002"
GRACE_SECONDS = 60
# A bounded load: a few large requests, so that they are all in flight at once.
CLIENTS = 6
INPUTS_PER_REQUEST = 128
TEXT = "an operator drains a replica before a rolling upgrade of the service " * 3


def first_answer(url: str, process: ServerProcess) -> httpx.Response:
    """Poll from process start until the server answers at all."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.process is not None and process.process.poll() is None, process.logs()
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.02)
    raise AssertionError(f"no answer from {url}:\n{process.logs()}")


def wait_ready(process: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while httpx.get(process.base_url + "/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, process.logs()
        time.sleep(0.1)


def test_ready_says_503_until_the_model_has_loaded_then_200() -> None:
    # The torch runtime takes seconds to load (ONNX a fraction of one): a wide
    # window in which the server listens but is not ready.
    slow_to_load = {
        "id": "all-minilm-l6-v2",
        "package": DEFAULT_MODEL_PACKAGE,
        "runtime": "torch",
        "aliases": [MODEL],
    }
    process = ServerProcess(config=write_config({"models": [slow_to_load]}), master_key=MASTER_KEY)
    process.launch()
    try:
        ready = first_answer(process.base_url + "/ready", process)
        # The server listens before the weights load, and says so.
        assert ready.status_code == 503, ready.text
        assert ready.json()["error"]["code"] == "not_ready"
        assert httpx.get(process.base_url + "/health", timeout=5).status_code == 200
        loading = httpx.post(
            process.api_url + "/embeddings",
            json={"model": MODEL, "input": "hello"},
            headers=process.headers(),
            timeout=5,
        )
        assert loading.status_code == 503
        assert loading.json()["error"]["code"] == "model_loading"

        wait_ready(process)
        body = httpx.get(process.base_url + "/ready", timeout=5).json()
        assert body["status"] == "ready" and MODEL in body["models"]
        client = openai.OpenAI(base_url=process.api_url, api_key=MASTER_KEY, max_retries=0)
        assert len(client.embeddings.create(model=MODEL, input="hello").data) == 1
    finally:
        process.stop()


def in_flight(process: ServerProcess) -> float:
    return scrape(process)[("ezlink_requests_in_flight", frozenset())]


def test_sigterm_finishes_every_accepted_request_then_exits_0() -> None:
    config = write_config({"server": {"shutdown_grace_seconds": GRACE_SECONDS}})
    process = ServerProcess(config=config, master_key=MASTER_KEY).start()
    client = openai.OpenAI(
        base_url=process.api_url, api_key=MASTER_KEY, max_retries=0, timeout=GRACE_SECONDS
    )

    def embed(worker: int) -> int:
        texts = [f"{worker}-{i} {TEXT}" for i in range(INPUTS_PER_REQUEST)]
        return len(client.embeddings.create(model=MODEL, input=texts).data)

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [pool.submit(embed, worker) for worker in range(CLIENTS)]
            while in_flight(process) < CLIENTS:
                assert not any(a.done() for a in answers), "the load finished before SIGTERM"
                time.sleep(0.01)
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)
            # Every request the server had accepted is answered in full.
            assert [a.result() for a in answers] == [INPUTS_PER_REQUEST] * CLIENTS
        assert process.process.wait(timeout=GRACE_SECONDS) == 0, process.logs()
        # Stopped accepting: nothing listens any more.
        try:
            httpx.get(process.base_url + "/health", timeout=2)
            raise AssertionError("the server still answers after SIGTERM")
        except httpx.TransportError:
            pass
    finally:
        process.stop()
    assert "Traceback" not in process.logs()


def test_a_model_that_cannot_load_stops_the_server_with_status_1(tmp_path: Path) -> None:
    source = locate_model(None, DEFAULT_MODEL_PACKAGE)
    broken = tmp_path / "broken-model"
    shutil.copytree(source, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    (broken / "model.safetensors").write_bytes(b"these are not weights")
    config = write_config(
        {"models": [{"id": "broken", "path": str(broken), "runtime": "torch"}]}, tmp_path
    )
    process = ServerProcess(config=config, env={"EZLINK_CACHE_DIR": str(tmp_path / "cache")})
    process.launch()
    try:
        assert process.process is not None
        assert process.process.wait(timeout=STARTUP_TIMEOUT_S) == 1, process.logs()
    finally:
        process.stop()
    assert "loading the models failed" in process.logs()
