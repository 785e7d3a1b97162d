"""The gateway in front of a misbehaving upstream: every fault ends in a fallback or an
OpenAI-shaped error, never a hang past the configured timeout.

One fault-injecting upstream process serves every case (the upstream model name
picks the fault); each fault has its own upstream entry, hence its own breaker.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from ezlink.engine.cl100k import cl100k
from tests.support.fault_upstream import (
    SECRET_IN_ERROR,
    USAGE_PER_INPUT,
    FaultUpstream,
    fake_vector,
)
from tests.support.server import ServerProcess, write_config

FRONT_KEY = "sk-front-master-0123456789abcdef"
UPSTREAM_KEY = "sk-upstream-key-abcdef0123456789"
# A hung upstream is given up on after this long; the client waits far longer.
UPSTREAM_TIMEOUT_S = 1.0
CLIENT_TIMEOUT_S = 20.0
FAULTS = [
    "error-500",
    "error-429",
    "hang",
    "close",
    "malformed",
    "wrong-count",
    "error-401",
    "oversize",
]
FAULT_STATUS = {
    "error-500": 502,
    "error-429": 503,
    "hang": 504,
    "close": 502,
    "malformed": 502,
    "wrong-count": 502,
    "error-401": 502,
    "oversize": 502,
}
QUICK_RETRY = {"retries": 1, "backoff_base": 0.01, "backoff_max": 0.05, "max_retry_after": 5}


def upstream(name: str, fault: FaultUpstream, model: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base_url": fault.api_url,
        "api_key_env": "FAULT_UPSTREAM_KEY",
        "model": model,
        "kind": "openai",
        "timeout": UPSTREAM_TIMEOUT_S,
        "breaker": {"failure_threshold": 1000, "cooldown": 60},
        **extra,
    }


def routed(model_id: str, *routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "upstream",
        "id": model_id,
        "routes": list(routes),
        "retry": QUICK_RETRY,
        **extra,
    }


def front_config(fault: FaultUpstream) -> dict[str, Any]:
    upstreams = [
        upstream("good", fault, "ok"),
        upstream("good-other", fault, "ok", kind="other"),
        upstream(
            "azure-style",
            fault,
            "ok-azure",
            api_key_header="api-key",
            params={"api-version": "2024-02-01"},
        ),
        upstream("nousage", fault, "ok-nousage"),
        upstream("bad-request", fault, "error-400"),
        upstream("once-429", fault, "error-429-once"),
        upstream("pausing", fault, "error-429"),
        upstream("pause-once", fault, "error-429-once-pause"),
        upstream("breaking", fault, "error-500", breaker={"failure_threshold": 2, "cooldown": 600}),
        *(upstream(f"fault-{name}", fault, name) for name in FAULTS),
    ]
    models = [
        routed("fake", {"upstream": "good"}),
        routed("fake-other", {"upstream": "good-other"}),
        routed("fake-azure", {"upstream": "azure-style"}),
        routed("fake-nousage", {"upstream": "nousage"}),
        routed(
            "bad-request-then-ok", {"upstream": "bad-request"}, {"upstream": "good", "weight": 0}
        ),
        routed("once-429", {"upstream": "once-429"}),
        routed("paused-then-ok", {"upstream": "pausing"}, {"upstream": "good", "weight": 0}),
        routed("pause-once", {"upstream": "pause-once"}),
        routed("breaking", {"upstream": "breaking"}),
        routed("slow-total", {"upstream": "fault-hang"}, timeout=1.5, retry={"retries": 5}),
    ]
    for name in FAULTS:
        models.append(routed(f"only-{name}", {"upstream": f"fault-{name}"}))
        models.append(
            routed(
                f"{name}-then-ok", {"upstream": f"fault-{name}"}, {"upstream": "good", "weight": 0}
            )
        )
    return {"upstreams": upstreams, "models": models}


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultUpstream]:
    with FaultUpstream() as process:
        yield process


@pytest.fixture(scope="module")
def front(fault: FaultUpstream) -> Iterator[ServerProcess]:
    config = write_config(front_config(fault))
    env = {"FAULT_UPSTREAM_KEY": UPSTREAM_KEY}
    with ServerProcess(config=config, env=env, master_key=FRONT_KEY) as process:
        yield process


def post(front: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        front.api_url + "/embeddings", json=body, headers=front.headers(), timeout=CLIENT_TIMEOUT_S
    )


def client(front: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.api_url, api_key=FRONT_KEY, max_retries=0)


def assert_vector(actual: object, item: object, dimension: int = 8) -> None:
    """Equal as float32: JSON floats carry float32 values in their shortest form."""
    np.testing.assert_array_equal(
        np.asarray(actual, dtype=np.float32), np.asarray(fake_vector(item, dimension), np.float32)
    )


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text
    return dict(error)


def test_upstream_vectors_come_back_in_input_order_with_the_upstreams_usage(
    front: ServerProcess,
) -> None:
    texts = [f"text number {i}" for i in range(7)]
    response = client(front).embeddings.create(model="fake", input=texts, encoding_format="float")
    assert [item.index for item in response.data] == list(range(7))
    for text, item in zip(texts, response.data, strict=True):
        assert_vector(item.embedding, text)
    assert response.usage.prompt_tokens == response.usage.total_tokens == USAGE_PER_INPUT * 7
    assert response.model == "fake"


def test_base64_is_rendered_by_the_gateway_whatever_the_upstream_sent(
    front: ServerProcess,
) -> None:
    # `fake` gets base64 from the upstream, `fake-other` gets floats.
    for model in ("fake", "fake-other"):
        body = post(front, {"model": model, "input": ["a", "b"], "encoding_format": "base64"})
        assert body.status_code == 200
        rows = body.json()["data"]
        decoded = [np.frombuffer(base64.b64decode(row["embedding"]), "<f4") for row in rows]
        assert_vector(decoded[1], "b")


def test_usage_is_counted_with_cl100k_when_the_upstream_gives_none(front: ServerProcess) -> None:
    texts = ["hello world", "an embedding gateway"]
    response = client(front).embeddings.create(model="fake-nousage", input=texts)
    expected = sum(len(cl100k().encode_ordinary(text)) for text in texts)
    assert response.usage.prompt_tokens == expected


def test_token_ids_are_forwarded_to_openai_upstreams_and_decoded_for_others(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    ids = cl100k().encode_ordinary("token ids in, vectors out")
    as_ids = post(front, {"model": "fake", "input": [ids]}).json()
    assert_vector(as_ids["data"][0]["embedding"], ids)
    as_text = post(front, {"model": "fake-other", "input": [ids]}).json()
    assert_vector(as_text["data"][0]["embedding"], "token ids in, vectors out")
    kinds = {c["input_kind"] for c in fault.calls("ok") if c["count"] == 1}
    assert kinds == {"ids", "text"}


def test_dimensions_and_user_go_to_openai_upstreams_and_are_applied_here_for_others(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    forwarded = post(front, {"model": "fake", "input": "dim", "dimensions": 4, "user": "u-42"})
    assert_vector(forwarded.json()["data"][0]["embedding"], "dim", 4)
    call = [c for c in fault.calls("ok") if c["dimensions"] == 4][-1]
    assert call["user"] == "u-42"
    assert call["authorization"] == f"Bearer {UPSTREAM_KEY}"

    local = post(front, {"model": "fake-other", "input": "dim", "dimensions": 4})
    full = np.array(fake_vector("dim"), dtype=np.float32)[:4]
    np.testing.assert_allclose(
        local.json()["data"][0]["embedding"], full / np.linalg.norm(full), rtol=1e-6
    )
    too_wide = post(front, {"model": "fake-other", "input": "dim", "dimensions": 9999})
    assert assert_openai_error(too_wide, 400)["param"] == "dimensions"


def test_the_key_can_go_in_another_header_with_query_parameters(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    # Azure OpenAI: `api-key: KEY` and `?api-version=...` on every call.
    assert post(front, {"model": "fake-azure", "input": "x"}).status_code == 200
    call = fault.calls("ok-azure")[-1]
    assert call["api_key"] == UPSTREAM_KEY and call["authorization"] is None
    assert call["query"] == "api-version=2024-02-01"


@pytest.mark.parametrize("name", FAULTS)
def test_a_failing_upstream_falls_back_to_the_next_route(front: ServerProcess, name: str) -> None:
    response = post(front, {"model": f"{name}-then-ok", "input": ["x", "y"]})
    assert response.status_code == 200, response.text
    assert_vector(response.json()["data"][1]["embedding"], "y")


@pytest.mark.parametrize("name", FAULTS)
def test_a_failing_upstream_alone_gives_an_openai_error(front: ServerProcess, name: str) -> None:
    response = post(front, {"model": f"only-{name}", "input": ["x", "y"]})
    error = assert_openai_error(response, FAULT_STATUS[name])
    assert error["type"] == "upstream_error"
    assert f"fault-{name}" in error["message"]


def test_an_upstream_429_tells_the_client_when_to_retry(front: ServerProcess) -> None:
    response = post(front, {"model": "only-error-429", "input": "x"})
    assert_openai_error(response, 503)
    assert response.headers["retry-after"] == "1"


def test_the_openai_client_sees_an_api_error_not_a_hang(front: ServerProcess) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client(front).embeddings.create(model="only-hang", input="x")
    assert raised.value.status_code == 504


def test_an_oversize_answer_is_a_502_and_an_upstream_failure_not_a_500(
    front: ServerProcess,
) -> None:
    # The upstream streams a valid answer padded to 32 MiB; 2 inputs may need ~1.5 MiB.
    with pytest.raises(openai.APIStatusError) as raised:
        client(front).embeddings.create(model="only-oversize", input=["x", "y"])
    assert raised.value.status_code == 502
    error = assert_openai_error(raised.value.response, 502)
    assert error["type"] == "upstream_error" and "MiB" in error["message"]

    admin = httpx.get(front.base_url + "/admin/upstreams", headers=front.headers(), timeout=5)
    oversize = next(row for row in admin.json()["data"] if row["name"] == "fault-oversize")
    assert oversize["failures"] >= 1
    assert "exceeds" in oversize["last_error"]


def test_the_model_timeout_bounds_all_retries_together(front: ServerProcess) -> None:
    # Six one-second tries would take 6 s; the model's 1.5 s budget ends it first.
    response = post(front, {"model": "slow-total", "input": "x"})
    assert assert_openai_error(response, 504)["code"] == "upstream_timeout"


def test_an_input_over_the_contracts_token_limit_is_400_before_any_upstream_call(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    before = len(fault.calls("ok"))
    response = post(front, {"model": "fake", "input": ["short", "word " * 9000]})
    error = assert_openai_error(response, 400)
    assert error["code"] == "context_length_exceeded" and "Input 1" in error["message"]
    assert len(fault.calls("ok")) == before


def test_retry_after_of_an_upstream_429_is_honoured(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    response = post(front, {"model": "once-429", "input": "x"})
    assert response.status_code == 200
    first, second = fault.calls("error-429-once")[:2]
    assert second["time"] - first["time"] >= 0.9  # Retry-After: 1, less clock granularity


def test_an_upstreams_retry_after_sends_the_next_request_straight_to_the_fallback(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    # The first request meets the 429 (Retry-After: 1) twice, then falls back.
    assert post(front, {"model": "paused-then-ok", "input": "x"}).status_code == 200
    asked = len(fault.calls("error-429"))
    # The next one, within the pause, does not knock on the paused upstream.
    assert post(front, {"model": "paused-then-ok", "input": "y"}).status_code == 200
    assert len(fault.calls("error-429")) == asked


def test_with_no_other_route_a_request_waits_out_a_short_pause(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, front, {"model": "pause-once", "input": "a"})
        while not fault.calls("error-429-once-pause"):  # the 429 that starts the pause
            time.sleep(0.01)
        second = pool.submit(post, front, {"model": "pause-once", "input": "b"})
        assert first.result().status_code == 200
        assert second.result().status_code == 200
    refused, *later = fault.calls("error-429-once-pause")
    assert len(later) == 2
    # Neither call came during the pause (Retry-After: 1, less clock granularity).
    assert all(call["time"] - refused["time"] >= 0.9 for call in later)


def test_a_client_error_from_the_upstream_passes_through_sanitized_without_fallback(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    before = len(fault.calls("ok"))
    response = post(front, {"model": "bad-request-then-ok", "input": "x"})
    error = assert_openai_error(response, 400)
    assert error["code"] == "context_length_exceeded"
    assert "Input too long" in error["message"]
    for secret in (SECRET_IN_ERROR, "hunter2", "internal.example", "Traceback", "/srv/app.py"):
        assert secret not in response.text
    assert len(fault.calls("ok")) == before


def test_an_open_circuit_stops_calls_and_shows_in_admin_and_cli(
    fault: FaultUpstream, front: ServerProcess
) -> None:
    # The healthy upstream answers once, so that it has a latency to show.
    assert post(front, {"model": "fake", "input": "x"}).status_code == 200
    # A try and one retry: two failures in a row open this upstream's circuit.
    assert post(front, {"model": "breaking", "input": "x"}).status_code == 502
    calls = len(fault.calls("error-500"))
    blocked = post(front, {"model": "breaking", "input": "x"})
    assert assert_openai_error(blocked, 503)["code"] == "upstream_unavailable"
    assert len(fault.calls("error-500")) == calls  # the open circuit sent nothing

    admin = httpx.get(front.base_url + "/admin/upstreams", headers=front.headers(), timeout=5)
    states = {row["name"]: row for row in admin.json()["data"]}
    assert states["breaking"]["state"] == "open"
    assert states["breaking"]["last_error"] == "HTTP 500"
    assert states["good"]["state"] == "up"
    assert states["good"]["latency_ewma_ms"] is not None
    assert UPSTREAM_KEY not in admin.text

    cli = subprocess.run(
        [sys.executable, "-m", "ezlink", "upstreams", "--url", front.base_url, "--key", FRONT_KEY],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    breaking_line = next(line for line in cli.stdout.splitlines() if line.startswith("breaking"))
    assert "open" in breaking_line and "HTTP 500" in breaking_line


def test_the_admin_endpoint_needs_the_master_key(front: ServerProcess) -> None:
    response = httpx.get(front.base_url + "/admin/upstreams", timeout=5)
    assert_openai_error(response, 401)
