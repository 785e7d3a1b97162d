"""With a key cache on, the admin API's own changes still hold from the next request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess, write_config

MASTER = "sk-key-cache-master-0123456789abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = write_config({"accounts": {"key_cache_seconds": 600}})
    # Its own accounts database: a key issued in the session's shared one
    # would close every keyless server of the tests that follow.
    env = {"EZLINK_DATA_DIR": str(tmp_path_factory.mktemp("key-cache"))}
    with ServerProcess(config=config, env=env, master_key=MASTER) as process:
        yield process


def admin(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, headers=server.headers(), timeout=30, **kwargs
    )


def test_a_key_disabled_or_revoked_through_the_admin_api_is_refused_at_once(
    server: ServerProcess,
) -> None:
    created = admin(server, "POST", "/admin/keys", json={"name": "cached"}).json()
    client = openai.OpenAI(base_url=server.api_url, api_key=created["key"], max_retries=0)
    assert client.embeddings.create(model="text-embedding-3-small", input="hi").data
    admin(server, "PATCH", f"/admin/keys/{created['id']}", json={"disabled": True})
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    admin(server, "PATCH", f"/admin/keys/{created['id']}", json={"disabled": False})
    assert client.embeddings.create(model="text-embedding-3-small", input="hi").data
    admin(server, "POST", f"/admin/keys/{created['id']}/revoke")
    response = httpx.post(
        server.api_url + "/embeddings",
        json={"model": "text-embedding-3-small", "input": "hi"},
        headers={"Authorization": f"Bearer {created['key']}"},
        timeout=30,
    )
    assert_openai_error(response, 401, code="invalid_api_key")
