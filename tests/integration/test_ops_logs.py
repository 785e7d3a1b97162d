"""The server's logs: one JSON object per line, a line per request, and no key's secret."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support.server import ServerProcess, write_config

MASTER_KEY = "sk-test-ops-logs-master-0123456789"
WRONG_KEY = "sk-test-ops-logs-wrong-9876543210"
MODEL = "text-embedding-ada-002"


@pytest.fixture(scope="module")
def logged_server() -> Iterator[ServerProcess]:
    """A server logging JSON at debug level (the most it ever says)."""
    config = write_config({"server": {"log_format": "json", "log_level": "debug"}})
    with ServerProcess(config=config, master_key=MASTER_KEY) as process:
        yield process


def log_entries(process: ServerProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in process.logs().splitlines() if line.strip()]


def access_entry(process: ServerProcess, request_id: str) -> dict[str, Any]:
    found = [e for e in log_entries(process) if e.get("request_id") == request_id]
    assert len(found) == 1, process.logs()
    return found[0]


def test_every_log_line_is_a_json_object(logged_server: ServerProcess) -> None:
    entries = log_entries(logged_server)
    assert entries
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)


def test_the_startup_banner_names_url_models_dimensions_and_auth_state(
    logged_server: ServerProcess,
) -> None:
    banner = next(e for e in log_entries(logged_server) if e["logger"] == "ezlink.serve")
    assert banner["url"] == logged_server.base_url
    assert banner["models"][0]["dimensions"] == 384
    assert MODEL in banner["models"][0]["names"]
    assert banner["auth"].startswith("master key required")


def test_a_request_is_logged_with_its_id_key_prefix_model_and_usage(
    logged_server: ServerProcess,
) -> None:
    client = openai.OpenAI(base_url=logged_server.api_url, api_key=MASTER_KEY, max_retries=0)
    response = client.embeddings.with_raw_response.create(
        model=MODEL, input=["one", "two"], extra_headers={"X-Request-ID": "ops-log-test-1"}
    )
    assert response.headers["x-request-id"] == "ops-log-test-1"
    usage = response.parse().usage
    logged_server.stop()  # flushes every line
    entry = access_entry(logged_server, "ops-log-test-1")
    assert entry["logger"] == "ezlink.access"
    assert entry["status"] == 200
    assert entry["key"] == "master"
    assert entry["model"] == MODEL
    assert entry["inputs"] == 2
    assert entry["tokens"] == usage.prompt_tokens
    assert entry["latency_ms"] > 0


def test_logs_never_contain_a_key_secret() -> None:
    config = write_config({"server": {"log_format": "json", "log_level": "debug"}})
    with ServerProcess(config=config, master_key=MASTER_KEY) as process:
        created = httpx.post(
            process.base_url + "/admin/keys",
            json={"name": "logs-test"},
            headers=process.headers(),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        issued = created.json()["key"]
        for key in (MASTER_KEY, issued, WRONG_KEY):
            client = openai.OpenAI(base_url=process.api_url, api_key=key, max_retries=0)
            try:
                client.embeddings.create(model=MODEL, input="hello")
            except openai.AuthenticationError:
                assert key == WRONG_KEY
        httpx.get(process.base_url + "/metrics", headers={"Authorization": f"Bearer {issued}"})
        process.stop()
    logs = process.logs()
    # The issued key's request is logged under its display prefix only.
    prefix = created.json()["prefix"]
    keys_logged = {e.get("key") for e in log_entries(process) if e["logger"] == "ezlink.access"}
    assert prefix in keys_logged
    for secret in (MASTER_KEY, issued, WRONG_KEY):
        assert secret not in logs
