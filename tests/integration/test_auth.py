"""Auth: the master key guards every /v1 route; secure by default off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess, free_port

NO_KEY = {"EZLINK_MASTER_KEY": ""}
EMBED = {"model": "all-minilm-l6-v2", "input": "hello"}
ROUTES = [
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/all-minilm-l6-v2"),
]


def call(
    server: ServerProcess, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = EMBED if method == "POST" else None
    return httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=60)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_missing_key_is_401_invalid_api_key(
    server: ServerProcess, method: str, path: str
) -> None:
    assert_openai_error(call(server, method, path), 401, code="invalid_api_key")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_wrong_key_is_401_and_never_echoed(server: ServerProcess, method: str, path: str) -> None:
    wrong_key = "sk-wrong-0123456789abcdefghijklmnop"
    response = call(server, method, path, {"Authorization": f"Bearer {wrong_key}"})
    assert_openai_error(response, 401, code="invalid_api_key")
    assert wrong_key not in response.text
    assert all(wrong_key not in value for value in response.headers.values())


def test_a_key_that_differs_only_at_the_end_is_refused_without_revealing_the_master_key(
    server: ServerProcess,
) -> None:
    assert server.master_key
    almost = server.master_key[:-1] + "X"
    response = call(server, "GET", "/v1/models", {"Authorization": f"Bearer {almost}"})
    assert_openai_error(response, 401, code="invalid_api_key")
    assert server.master_key not in response.text
    assert almost not in response.text


def test_the_master_key_in_another_scheme_is_refused(server: ServerProcess) -> None:
    response = call(server, "GET", "/v1/models", {"Authorization": f"Basic {server.master_key}"})
    assert_openai_error(response, 401, code="invalid_api_key")


def test_the_bearer_scheme_is_case_insensitive(server: ServerProcess) -> None:
    response = call(server, "GET", "/v1/models", {"Authorization": f"bearer {server.master_key}"})
    assert response.status_code == 200


def test_auth_is_checked_before_the_body_is_parsed(server: ServerProcess) -> None:
    response = httpx.post(server.api_url + "/embeddings", content=b"{not json", timeout=60)
    assert_openai_error(response, 401, code="invalid_api_key")


def test_the_openai_client_with_a_wrong_key_raises_authentication_error(
    server: ServerProcess,
) -> None:
    client = openai.OpenAI(base_url=server.api_url, api_key="sk-not-the-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.embeddings.create(model="text-embedding-ada-002", input="hi")
    assert caught.value.code == "invalid_api_key"


def test_the_server_log_never_holds_a_full_key(server: ServerProcess) -> None:
    assert server.master_key
    secrets = [server.master_key, "sk-wrong-0123456789abcdefghijklmnop", "sk-not-the-key-123456"]
    for secret in secrets:
        call(server, "GET", "/v1/models", {"Authorization": f"Bearer {secret}"})
    logs = server.logs()
    assert "/v1/models" in logs
    for secret in secrets:
        assert secret not in logs


@pytest.fixture(scope="module")
def keyless_server() -> Iterator[ServerProcess]:
    with ServerProcess(env=NO_KEY) as process:
        yield process


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_master_key_every_route_works_on_loopback(
    keyless_server: ServerProcess, method: str, path: str
) -> None:
    assert call(keyless_server, method, path).status_code == 200


def test_without_a_master_key_any_client_key_is_accepted(keyless_server: ServerProcess) -> None:
    # openai-python insists on some key; with no master key it is ignored.
    client = openai.OpenAI(base_url=keyless_server.api_url, api_key="anything")
    assert len(client.embeddings.create(model="text-embedding-ada-002", input="hi").data) == 1


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ezlink", "serve", "--port", str(free_port()), *args]


def test_serve_refuses_a_public_address_without_a_key() -> None:
    env = {**os.environ, **NO_KEY}
    result = subprocess.run(
        serve_command("--host", "0.0.0.0"), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Refusing to serve on 0.0.0.0" in result.stderr
    assert "EZLINK_MASTER_KEY" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_serve_binds_a_public_address_when_told_insecure_no_auth() -> None:
    with ServerProcess(env=NO_KEY, args=["--host", "0.0.0.0", "--insecure-no-auth"]) as process:
        response = httpx.get(process.api_url + "/models", timeout=60)
        assert response.status_code == 200
