"""Load balancing, failover and request splitting across real upstream processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.fault_upstream import (
    USAGE_PER_INPUT,
    FaultUpstream,
    fake_vector,
)
from tests.support.server import ServerProcess, write_config

FRONT_KEY = "sk-front-master-failover-0123456789"
LOAD_REQUESTS = 240
LOAD_THREADS = 4
KILL_AFTER = 60
BIG_REQUEST = 5000
UPSTREAM_LIMIT = 2048


def upstream(name: str, fault: FaultUpstream, model: str) -> dict[str, Any]:
    return {
        "name": name,
        "base_url": fault.api_url,
        "model": model,
        "kind": "openai",
        "timeout": 5,
        "max_inputs_per_request": UPSTREAM_LIMIT,
        "max_concurrency": 2,
        "breaker": {"failure_threshold": 3, "cooldown": 600},
    }


@pytest.fixture(scope="module")
def upstream_a() -> Iterator[FaultUpstream]:
    with FaultUpstream(max_inputs=UPSTREAM_LIMIT) as process:
        yield process


@pytest.fixture(scope="module")
def upstream_b() -> Iterator[FaultUpstream]:
    with FaultUpstream(max_inputs=UPSTREAM_LIMIT) as process:
        yield process


@pytest.fixture(scope="module")
def upstream_c() -> Iterator[FaultUpstream]:
    with FaultUpstream() as process:
        yield process


@pytest.fixture(scope="module")
def front(
    upstream_a: FaultUpstream, upstream_b: FaultUpstream, upstream_c: FaultUpstream
) -> Iterator[ServerProcess]:
    retry = {"retries": 1, "backoff_base": 0.01, "backoff_max": 0.05}
    config = write_config(
        {
            "server": {"limits": {"max_inputs": BIG_REQUEST}},
            "upstreams": [
                upstream("a", upstream_a, "ok-a"),
                upstream("b", upstream_b, "ok-b"),
                upstream("limited", upstream_b, "ok-split"),
                {
                    **upstream("phoenix", upstream_c, "ok-c"),
                    "breaker": {"failure_threshold": 1, "cooldown": 1},
                },
            ],
            "models": [
                {
                    "kind": "upstream",
                    "id": "pair",
                    "routes": [{"upstream": "a", "weight": 1}, {"upstream": "b", "weight": 1}],
                    "retry": retry,
                },
                {"kind": "upstream", "id": "big", "routes": [{"upstream": "limited"}]},
                {
                    "kind": "upstream",
                    "id": "reborn",
                    "routes": [{"upstream": "phoenix"}, {"upstream": "b", "weight": 0}],
                    "retry": retry,
                },
            ],
        }
    )
    with ServerProcess(config=config, master_key=FRONT_KEY) as process:
        yield process


def embed(client: httpx.Client, front: ServerProcess, model: str, inputs: Any) -> httpx.Response:
    return client.post(
        front.api_url + "/embeddings",
        json={"model": model, "input": inputs},
        headers=front.headers(),
        timeout=60,
    )


def assert_vectors(answer: dict[str, Any], texts: list[str]) -> None:
    got = np.array([row["embedding"] for row in answer["data"]], dtype=np.float32)
    want = np.array([fake_vector(text) for text in texts], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_a_request_larger_than_the_upstream_limit_is_split_and_kept_in_order(
    front: ServerProcess, upstream_b: FaultUpstream
) -> None:
    texts = [f"input number {i}" for i in range(BIG_REQUEST)]
    with httpx.Client() as client:
        response = embed(client, front, "big", texts)
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert [row["index"] for row in answer["data"]] == list(range(BIG_REQUEST))
    assert_vectors(answer, texts)
    assert answer["usage"]["prompt_tokens"] == USAGE_PER_INPUT * BIG_REQUEST
    sizes = sorted(call["count"] for call in upstream_b.calls("ok-split"))
    assert sizes == [BIG_REQUEST - 2 * UPSTREAM_LIMIT, UPSTREAM_LIMIT, UPSTREAM_LIMIT]


def upstream_states(front: ServerProcess) -> dict[str, dict[str, Any]]:
    admin = httpx.get(front.base_url + "/admin/upstreams", headers=front.headers(), timeout=5)
    return {row["name"]: row for row in admin.json()["data"]}


def test_an_upstream_that_comes_back_is_probed_back_into_rotation(
    front: ServerProcess, upstream_c: FaultUpstream
) -> None:
    upstream_c.kill()
    with httpx.Client() as client:
        assert embed(client, front, "reborn", ["while down"]).status_code == 200  # fell back
        assert upstream_states(front)["phoenix"]["state"] == "open"
        with FaultUpstream(port=upstream_c.port) as revived:
            deadline = time.monotonic() + 20
            while upstream_states(front)["phoenix"]["state"] != "up":
                assert time.monotonic() < deadline, "the circuit never closed"
                time.sleep(0.2)  # past the 1 s cooldown, the next request is the probe
                assert embed(client, front, "reborn", ["probe"]).status_code == 200
            assert len(revived.calls("ok-c")) >= 1


def test_killing_one_of_two_upstreams_under_load_costs_no_client_an_error(
    front: ServerProcess, upstream_a: FaultUpstream, upstream_b: FaultUpstream
) -> None:
    done = threading.Semaphore(0)
    statuses: list[int] = []

    def one_request(i: int, client: httpx.Client) -> None:
        texts = [f"load {i}", f"load {i} again"]
        response = embed(client, front, "pair", texts)
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert_vectors(response.json(), texts)
        done.release()

    with httpx.Client() as client, ThreadPoolExecutor(LOAD_THREADS) as pool:
        futures = [pool.submit(one_request, i, client) for i in range(LOAD_REQUESTS)]
        for _ in range(KILL_AFTER):
            done.acquire(timeout=60)
        served_by_a = len(upstream_a.calls("ok-a"))
        upstream_a.kill()
        for future in futures:
            future.result(timeout=60)

    assert len(statuses) == LOAD_REQUESTS
    assert set(statuses) == {200}
    assert served_by_a > 0 and len(upstream_b.calls("ok-b")) > 0  # both took a share

    states = upstream_states(front)
    assert states["a"]["state"] == "open"
    assert states["a"]["times_opened"] == 1
    assert states["b"]["state"] == "up"


def test_when_every_upstream_is_down_the_client_gets_503(
    front: ServerProcess, upstream_a: FaultUpstream, upstream_b: FaultUpstream
) -> None:
    upstream_a.kill()
    upstream_b.kill()
    with httpx.Client() as client:
        response = embed(client, front, "pair", ["anyone there?"])
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert error["type"] == "upstream_error"
