"""/metrics after real traffic: the counters move by exactly what the clients saw."""

from __future__ import annotations

import httpx
import openai

from tests.support.metrics import scrape, value
from tests.support.server import ServerProcess

MODEL = "text-embedding-ada-002"
EMBEDDINGS = "/v1/embeddings"


def test_counters_move_by_the_requests_inputs_and_tokens_served(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.api_url, api_key=server.master_key, max_retries=0)
    before = scrape(server)
    batches = [["a cat", "a dog", "a bird"], ["the quick brown fox jumps"], ["x"] * 5]
    tokens = 0
    for texts in batches:
        tokens += client.embeddings.create(model=MODEL, input=texts).usage.prompt_tokens
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": EMBEDDINGS, "model": MODEL, "status": "200"}
    assert delta("ezlink_requests_total", **ok) == len(batches)
    assert delta("ezlink_embedding_inputs_total", model=MODEL) == 9
    assert delta("ezlink_embedding_tokens_total", model=MODEL) == tokens
    assert delta("ezlink_request_duration_seconds_count", route=EMBEDDINGS, model=MODEL) == 3
    # Every input went through exactly one batch and waited in the queue once.
    served = "all-minilm-l6-v2"
    assert delta("ezlink_batch_size_sum", model=served) == 9
    assert delta("ezlink_queue_wait_seconds_count", model=served) == 9
    assert (
        delta("ezlink_batches_total", model=served)
        == delta("ezlink_batch_size_count", model=served)
        >= 3
    )
    # The batches ran exactly the tokens the clients were charged, padding aside.
    assert delta("ezlink_batch_tokens_total", model=served) == tokens
    assert delta("ezlink_batch_padded_tokens_total", model=served) >= tokens


def test_errors_are_counted_by_status(server: ServerProcess) -> None:
    before = scrape(server)
    unknown = httpx.post(
        server.api_url + "/embeddings",
        json={"model": "no-such-model", "input": "hi"},
        headers=server.headers(),
        timeout=10,
    )
    no_key = httpx.post(
        server.api_url + "/embeddings", json={"model": MODEL, "input": "hi"}, timeout=10
    )
    missing = httpx.get(server.base_url + "/no/such/route", timeout=10)
    assert (unknown.status_code, no_key.status_code, missing.status_code) == (404, 401, 404)
    after = scrape(server)

    def delta(**labels: str) -> float:
        return value(after, "ezlink_requests_total", **labels) - value(
            before, "ezlink_requests_total", **labels
        )

    # An unknown model is not a label value (it would let clients grow the series).
    assert delta(route=EMBEDDINGS, model="", status="404") == 1
    assert delta(route=EMBEDDINGS, model="", status="401") == 1
    assert delta(route="unmatched", model="", status="404") == 1


def test_engine_and_process_figures_are_exposed(server: ServerProcess) -> None:
    samples = scrape(server)
    assert value(samples, "ezlink_ready") == 1
    assert value(samples, "ezlink_queue_tokens", model="all-minilm-l6-v2") == 0
    # Exported at 0 before any drop, so rate() sees the first one.
    assert ("ezlink_dropped_inputs_total", frozenset({("model", "all-minilm-l6-v2")})) in samples
    assert value(samples, "ezlink_requests_in_flight") == 0
    assert value(samples, "process_resident_memory_bytes") > 10_000_000
