"""/metrics shows the upstreams: calls, errors and circuit state move with real failures."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.fault_upstream import USAGE_PER_INPUT, FaultUpstream
from tests.support.metrics import scrape, value
from tests.support.server import ServerProcess, write_config

MASTER_KEY = "sk-test-ops-upstreams-0123456789"
RETRIES = 1


def upstream(name: str, fault: FaultUpstream, behaviour: str) -> dict[str, object]:
    return {
        "name": name,
        "base_url": fault.api_url,
        "model": behaviour,
        "kind": "openai",
        # Opens after one request's attempts (the first call and its retry).
        "breaker": {"failure_threshold": RETRIES + 1, "cooldown": 600},
    }


@pytest.fixture(scope="module")
def front() -> Iterator[ServerProcess]:
    with FaultUpstream() as fault:
        config = write_config(
            {
                "upstreams": [
                    upstream("failing", fault, "error-500"),
                    upstream("good", fault, "ok"),
                ],
                "models": [
                    {
                        "kind": "upstream",
                        "id": "flaky",
                        "routes": [{"upstream": "failing"}, {"upstream": "good", "weight": 0}],
                        "retry": {"retries": RETRIES, "backoff_base": 0.01, "backoff_max": 0.05},
                    }
                ],
            }
        )
        with ServerProcess(config=config, master_key=MASTER_KEY) as process:
            yield process


def test_failed_upstream_calls_open_the_circuit_and_show_in_metrics(front: ServerProcess) -> None:
    client = openai.OpenAI(base_url=front.api_url, api_key=MASTER_KEY, max_retries=0)
    response = client.embeddings.create(model="flaky", input=["a", "b", "c"])
    assert len(response.data) == 3
    samples = scrape(front)
    assert value(samples, "ezlink_upstream_errors_total", upstream="failing") == RETRIES + 1
    assert value(samples, "ezlink_upstream_calls_total", upstream="failing") == RETRIES + 1
    assert value(samples, "ezlink_upstream_calls_total", upstream="good") == 1
    assert value(samples, "ezlink_upstream_errors_total", upstream="good") == 0
    assert value(samples, "ezlink_upstream_circuit_state", upstream="failing", state="open") == 1
    assert value(samples, "ezlink_upstream_circuit_state", upstream="failing", state="up") == 0
    assert value(samples, "ezlink_upstream_circuit_state", upstream="good", state="up") == 1
    assert value(samples, "ezlink_upstream_circuit_opened_total", upstream="failing") == 1
    # The client's request succeeded through the fallback and is counted as such.
    ok = {"route": "/v1/embeddings", "model": "flaky", "status": "200"}
    assert value(samples, "ezlink_requests_total", **ok) == 1
    assert value(samples, "ezlink_embedding_tokens_total", model="flaky") == 3 * USAGE_PER_INPUT
