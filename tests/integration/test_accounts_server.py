"""Issued keys, limits and usage through real server processes, on SQLite and PostgreSQL.

Two `ezlink serve` processes share one accounts database; the clients are
the real openai-python client and plain httpx (to see every header).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from ezlink.accounts.store.database import make_engine
from ezlink.accounts.store.tables import api_keys, usage_events
from ezlink.cli import app as cli_app
from tests.support.openai_errors import assert_openai_error
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess
from tests.support.server_group import start_servers, stop_servers

MASTER = "sk-accounts-master-0123456789abcdef"
MODEL = "text-embedding-3-small"
OTHER_MODEL = "text-embedding-ada-002"
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge".split()  # noqa: SIM905


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One accounts database per backend, shared by the module's servers."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('accounts') / 'ezlink.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(scope="module")
def servers(database: str) -> Iterator[list[ServerProcess]]:
    """Two server processes on the same accounts database."""
    started = start_servers(2, MASTER, {"EZLINK_DATABASE_URL": database})
    try:
        yield started
    finally:
        stop_servers(started)


def admin(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, server.base_url + path, headers=server.headers(), timeout=60, **kwargs
    )


def create_key(server: ServerProcess, **fields: Any) -> dict[str, Any]:
    response = admin(server, "POST", "/admin/keys", json={"name": "test", **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def embed(
    server: ServerProcess,
    secret: str,
    text: str | list[str] = "hello",
    model: str = MODEL,
    **extra: Any,
) -> httpx.Response:
    return httpx.post(
        server.api_url + "/embeddings",
        json={"model": model, "input": text, **extra},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


def usage_by_key(server: ServerProcess) -> dict[str, dict[str, Any]]:
    response = admin(server, "GET", "/admin/usage", params={"group_by": "key"})
    assert response.status_code == 200, response.text
    return {row["key"]: row for row in response.json()["data"]}


def db_rows(database: str, table: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(database)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(select(table))
                return [dict(row) for row in result.mappings().all()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def wait_for_usage(
    servers: list[ServerProcess], expected: dict[str, int], tries: int = 40
) -> dict[str, dict[str, Any]]:
    """Usage as the admin API reports it, once every process has flushed."""
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(tries):
        rows = usage_by_key(servers[0])
        if all(rows.get(key, {}).get("prompt_tokens") == n for key, n in expected.items()):
            break
        asyncio.run(asyncio.sleep(0.25))
    return rows


# -- the admin surface -------------------------------------------------------


def test_admin_api_creates_lists_shows_updates_and_revokes_keys(
    servers: list[ServerProcess],
) -> None:
    a, b = servers
    created = create_key(a, name="ci", owner="team-x", allowed_models=[MODEL], rpm=100)
    assert created["key"].startswith("sk-") and len(created["key"]) >= 43
    assert created["state"] == "active" and created["owner"] == "team-x"
    key_id = created["id"]
    listed = admin(b, "GET", "/admin/keys").json()["data"]
    assert key_id in [item["id"] for item in listed]
    assert all("key" not in item for item in listed)
    shown = admin(b, "GET", f"/admin/keys/{key_id}").json()
    assert shown["allowed_models"] == [MODEL] and shown["rpm"] == 100
    updated = admin(a, "PATCH", f"/admin/keys/{key_id}", json={"rpm": None, "tpm": 5000})
    assert updated.json()["rpm"] is None and updated.json()["tpm"] == 5000
    revoked = admin(a, "POST", f"/admin/keys/{key_id}/revoke").json()
    assert revoked["state"] == "revoked"
    assert_openai_error(admin(a, "GET", "/admin/keys/key_nope"), 404)


def test_admin_api_answers_bad_input_with_400(servers: list[ServerProcess]) -> None:
    a = servers[0]
    assert_openai_error(admin(a, "POST", "/admin/keys", content=b"{"), 400)
    assert_openai_error(admin(a, "POST", "/admin/keys", json={"name": ""}), 400)
    assert_openai_error(admin(a, "POST", "/admin/keys", json={"name": "x", "rpm": 0}), 400)
    assert_openai_error(admin(a, "POST", "/admin/keys", json={"name": "x", "bogus": 1}), 400)
    assert_openai_error(admin(a, "GET", "/admin/usage", params={"since": "yesterday"}), 400)
    assert_openai_error(admin(a, "GET", "/admin/usage", params={"group_by": "week"}), 400)


def test_admin_api_is_never_reachable_with_an_ordinary_key(servers: list[ServerProcess]) -> None:
    a = servers[0]
    secret = create_key(a)["key"]
    ordinary = {"Authorization": f"Bearer {secret}"}
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/usage")]:
        response = httpx.request(method, a.base_url + path, headers=ordinary, json={"name": "x"})
        assert_openai_error(response, 403, code="permission_denied")
    assert_openai_error(httpx.get(a.base_url + "/admin/keys"), 401, code="invalid_api_key")


# -- keys on the /v1 routes ----------------------------------------------------


def test_revoked_disabled_and_expired_keys_are_refused_at_once_by_every_process(
    servers: list[ServerProcess],
) -> None:
    a, b = servers
    created = create_key(a)
    secret, key_id = created["key"], created["id"]
    assert embed(b, secret).status_code == 200
    admin(a, "PATCH", f"/admin/keys/{key_id}", json={"disabled": True})
    assert_openai_error(embed(b, secret), 401, code="invalid_api_key")
    admin(a, "PATCH", f"/admin/keys/{key_id}", json={"disabled": False})
    assert embed(b, secret).status_code == 200
    admin(a, "PATCH", f"/admin/keys/{key_id}", json={"expires_at": "2000-01-01T00:00:00Z"})
    assert_openai_error(embed(b, secret), 401, code="invalid_api_key")
    admin(a, "PATCH", f"/admin/keys/{key_id}", json={"expires_at": None})
    assert embed(b, secret).status_code == 200
    admin(a, "POST", f"/admin/keys/{key_id}/revoke")
    assert_openai_error(embed(a, secret), 401, code="invalid_api_key")
    assert_openai_error(embed(b, secret), 401, code="invalid_api_key")


def test_unknown_keys_are_refused_without_echoing_them(servers: list[ServerProcess]) -> None:
    guess = "sk-" + "x" * 43
    response = embed(servers[0], guess)
    assert_openai_error(response, 401, code="invalid_api_key")
    assert guess not in response.text


def test_a_key_lists_and_uses_only_its_allowed_models(servers: list[ServerProcess]) -> None:
    a = servers[0]
    secret = create_key(a, allowed_models=[MODEL])["key"]
    client = openai.OpenAI(api_key=secret, base_url=a.api_url, max_retries=0)
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.embeddings.create(model=MODEL, input="ok").usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError) as refused:
        client.embeddings.create(model=OTHER_MODEL, input="no")
    assert refused.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(OTHER_MODEL)


def test_master_key_still_uses_every_model(servers: list[ServerProcess]) -> None:
    assert embed(servers[0], MASTER, model=OTHER_MODEL).status_code == 200


# -- limits ------------------------------------------------------------------


def test_responses_carry_openai_rate_limit_headers(servers: list[ServerProcess]) -> None:
    a = servers[0]
    secret = create_key(a, rpm=50, tpm=10_000)["key"]
    started = time.monotonic()
    response = embed(a, secret, "four words of text")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    tokens = response.json()["usage"]["prompt_tokens"]
    headers = response.headers
    assert headers["x-ratelimit-limit-requests"] == "50"
    assert headers["x-ratelimit-remaining-requests"] == "49"
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    # The bucket held the request's size bound while it ran, and refilled
    # (10,000 a minute) meanwhile: the tokens used, less that refill.
    refill = 10_000 * elapsed / 60
    assert int(headers["x-ratelimit-remaining-tokens"]) <= 10_000 - tokens + refill + 1
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["x-ratelimit-reset-tokens"].endswith("s")


def test_past_the_request_rate_a_key_gets_429_with_retry_after(
    servers: list[ServerProcess],
) -> None:
    a = servers[0]
    secret = create_key(a, rpm=2)["key"]
    assert [embed(a, secret).status_code for _ in range(2)] == [200, 200]
    refused = embed(a, secret)
    assert_openai_error(refused, 429, code="rate_limit_exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_past_the_token_rate_a_key_gets_429(servers: list[ServerProcess]) -> None:
    a = servers[0]
    secret = create_key(a, tpm=10)["key"]
    assert embed(a, secret, " ".join(WORDS)).status_code == 200  # > 10 tokens
    assert_openai_error(embed(a, secret), 429, code="rate_limit_exceeded")


def test_a_quota_stops_a_key_within_one_request_of_its_budget(
    servers: list[ServerProcess],
) -> None:
    a, b = servers
    budget = 60
    created = create_key(a, quota_tokens=budget)
    secret = created["key"]
    received, last = 0, 0
    for turn in range(100):
        response = embed((a, b)[turn % 2], secret, " ".join(WORDS[: 1 + turn % 5]))
        if response.status_code != 200:
            assert_openai_error(response, 429, code="insufficient_quota")
            assert response.json()["error"]["type"] == "insufficient_quota"
            break
        last = response.json()["usage"]["prompt_tokens"]
        received += last
    else:
        pytest.fail("the quota never stopped the key")
    assert budget <= received < budget + last
    for server in (a, b):
        assert_openai_error(embed(server, secret), 429, code="insufficient_quota")
    shown = admin(a, "GET", f"/admin/keys/{created['id']}").json()
    assert shown["used_tokens"] == received


# -- usage accounting ----------------------------------------------------------


async def _load(servers: list[ServerProcess], secrets: list[str], requests: int) -> dict[str, int]:
    """`requests` concurrent embeddings calls spread over keys and servers;
    returns the prompt tokens each key's clients were told they used."""
    rng = random.Random(4)
    clients = {
        (secret, server.port): openai.AsyncOpenAI(
            api_key=secret, base_url=server.api_url, max_retries=0, timeout=120
        )
        for secret in secrets
        for server in servers
    }
    received = dict.fromkeys(secrets, 0)
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        secret = secrets[i % len(secrets)]
        server = servers[(i // len(secrets)) % len(servers)]
        words = [
            " ".join(rng.choices(WORDS, k=rng.randint(1, 30))) for _ in range(rng.randint(1, 4))
        ]
        async with gate:
            result = await clients[(secret, server.port)].embeddings.create(
                model=MODEL, input=words, user=f"user-{i % 3}"
            )
        received[secret] += result.usage.prompt_tokens

    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        for client in clients.values():
            await client.close()
    return received


def test_usage_per_key_equals_what_clients_received_across_two_processes(
    servers: list[ServerProcess], database: str
) -> None:
    # Keys with a quota are charged at request time, the others at flush time:
    # both ways must come out exact.
    created = [
        create_key(servers[0], name=f"load-{i}", quota_tokens=10**9 if i % 2 else None)
        for i in range(4)
    ]
    secrets = [item["key"] for item in created]
    received = asyncio.run(_load(servers, secrets, requests=160))
    ids = {item["key"]: item["id"] for item in created}
    expected = {ids[secret]: tokens for secret, tokens in received.items()}
    rows = wait_for_usage(servers, expected)
    for key_id, tokens in expected.items():
        assert rows[key_id]["prompt_tokens"] == tokens
        assert rows[key_id]["requests"] == 40 and rows[key_id]["errors"] == 0
        shown = admin(servers[1], "GET", f"/admin/keys/{key_id}").json()
        assert shown["used_tokens"] == tokens
    events = [row for row in db_rows(database, usage_events) if row["key_id"] in expected]
    assert {row["user"] for row in events} == {"user-0", "user-1", "user-2"}
    assert all(row["model"] == MODEL and row["status"] == 200 for row in events)
    assert all(row["latency_ms"] > 0 and 1 <= row["inputs"] <= 4 for row in events)


def test_failed_requests_are_recorded_with_their_status(servers: list[ServerProcess]) -> None:
    a = servers[0]
    created = create_key(a, rpm=1)
    embed(a, created["key"])
    embed(a, created["key"])  # 429
    rows = wait_for_usage(servers, {created["id"]: 0}, tries=1)
    for _ in range(40):
        rows = usage_by_key(a)
        if rows.get(created["id"], {}).get("requests") == 2:
            break
        asyncio.run(asyncio.sleep(0.25))
    assert rows[created["id"]]["requests"] == 2 and rows[created["id"]]["errors"] == 1


def wait_for_requests(server: ServerProcess, key_id: str, requests: int) -> dict[str, Any]:
    """The key's usage row once `requests` requests are in it (flushes are periodic)."""
    row: dict[str, Any] = {}
    for _ in range(40):
        row = usage_by_key(server).get(key_id, {})
        if row.get("requests") == requests:
            break
        asyncio.run(asyncio.sleep(0.25))
    return row


def test_requests_refused_before_admission_are_in_the_keys_usage(
    servers: list[ServerProcess], database: str
) -> None:
    a = servers[0]
    created = create_key(a, allowed_models=[MODEL])
    client = openai.OpenAI(api_key=created["key"], base_url=a.api_url, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=OTHER_MODEL, input="not this key's model")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="unknown")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="", user="u-400")
    tokens = client.embeddings.create(model=MODEL, input="fine").usage.prompt_tokens
    row = wait_for_requests(a, created["id"], 4)
    assert row["requests"] == 4 and row["errors"] == 3 and row["prompt_tokens"] == tokens
    events = [row for row in db_rows(database, usage_events) if row["key_id"] == created["id"]]
    refused = sorted(
        (row["status"], row["model"], row["prompt_tokens"], row["user"])
        for row in events
        if row["status"] != 200
    )
    assert refused == [
        (400, MODEL, 0, "u-400"),
        (404, "no-such-model", 0, None),
        (404, OTHER_MODEL, 0, None),
    ]
    assert all(row["request_id"] for row in events)


def test_usage_can_be_filtered_and_grouped(servers: list[ServerProcess]) -> None:
    a = servers[0]
    created = create_key(a)
    response = embed(a, created["key"], ["one", "two"])
    tokens = response.json()["usage"]["prompt_tokens"]
    wait_for_usage(servers, {created["id"]: tokens})
    params = {"key": created["id"], "group_by": "model"}
    (row,) = admin(a, "GET", "/admin/usage", params=params).json()["data"]
    assert row == {
        "model": MODEL,
        "requests": 1,
        "inputs": 2,
        "prompt_tokens": tokens,
        "completion_tokens": 0,
        "errors": 0,
        "cost": "0.00",
    }
    days = admin(a, "GET", "/admin/usage", params={"group_by": "day", "since": "2000-01-01"})
    assert len(days.json()["data"]) >= 1
    future = admin(a, "GET", "/admin/usage", params={"since": "2999-01-01"}).json()["data"]
    assert future[0]["requests"] == 0


# -- secrets -----------------------------------------------------------------


def dump_database(database: str, request: pytest.FixtureRequest) -> str:
    if database.startswith("sqlite"):
        path = database.removeprefix("sqlite:///")
        rows = [db_rows(database, table) for table in (api_keys, usage_events)]
        raw = b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if Path(p).exists())
        return json.dumps(rows, default=str) + raw.decode("latin-1")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.dump(database)


def test_a_key_secret_never_appears_in_the_database_logs_or_later_responses(
    servers: list[ServerProcess], database: str, request: pytest.FixtureRequest
) -> None:
    a, b = servers
    created = create_key(a, name="secretive")
    secret, key_id = created["key"], created["id"]
    seen: list[httpx.Response] = [
        embed(a, secret, "hello"),
        embed(b, secret, ["a", "b"], user="u"),
        embed(a, secret, ""),  # 400
        embed(a, secret, model="no-such-model"),  # 404
        embed(a, secret[:-1]),  # 401 for a near miss
        admin(a, "GET", "/admin/keys"),
        admin(b, "GET", f"/admin/keys/{key_id}"),
        admin(a, "PATCH", f"/admin/keys/{key_id}", json={"owner": "o"}),
        admin(a, "GET", "/admin/usage", params={"group_by": "key"}),
        httpx.get(a.api_url + "/models", headers={"Authorization": f"Bearer {secret}"}),
    ]
    body = secret[len(created["prefix"]) :]
    for response in seen:
        text = response.text + json.dumps(dict(response.headers))
        assert secret not in text and body not in text
    used = sum(response.json()["usage"]["prompt_tokens"] for response in seen[:2])
    wait_for_usage(servers, {key_id: used})
    for server in servers:
        assert body not in server.logs()
    dumped = dump_database(database, request)
    assert created["prefix"] in dumped and body not in dumped


# -- the command line ------------------------------------------------------------


def ezlink(database: str, *args: str) -> Result:
    """The `ezlink` command, run in-process (as `ezlink ...` would run it)."""
    return CliRunner().invoke(cli_app, list(args), env={"EZLINK_DATABASE_URL": database})


def test_cli_issues_keys_the_servers_accept_and_revokes_them(
    servers: list[ServerProcess], database: str
) -> None:
    a = servers[0]
    made = ezlink(
        database,
        "keys",
        "create",
        "--name",
        "cli",
        "--models",
        MODEL,
        "--rpm",
        "100",
        "--quota-tokens",
        "1000",
        "--expires",
        "2999-01-01",
        "--json",
    )
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert created["key"].startswith("sk-") and created["allowed_models"] == [MODEL]
    assert created["expires_at"].startswith("2999-01-01")
    tokens = embed(a, created["key"]).json()["usage"]["prompt_tokens"]
    listed = ezlink(database, "keys", "list")
    assert created["id"] in listed.stdout and created["key"] not in listed.stdout
    shown = json.loads(ezlink(database, "keys", "show", created["prefix"], "--json").stdout)
    assert shown["id"] == created["id"]
    updated = ezlink(database, "keys", "update", created["id"], "--disable", "--json")
    assert json.loads(updated.stdout)["state"] == "disabled"
    assert_openai_error(embed(a, created["key"]), 401)
    enabled = ezlink(database, "keys", "update", created["id"], "--enable", "--clear", "rpm,quota")
    assert "rpm:            \n" in enabled.stdout and "quota_tokens:   \n" in enabled.stdout
    tokens += embed(a, created["key"]).json()["usage"]["prompt_tokens"]
    assert ezlink(database, "keys", "revoke", created["id"]).exit_code == 0
    assert_openai_error(embed(a, created["key"]), 401)
    wait_for_usage(servers, {created["id"]: tokens})
    usage = ezlink(database, "usage", "--key", created["id"], "--group-by", "key", "--json")
    assert json.loads(usage.stdout) == [
        {
            "key": created["id"],
            "requests": 2,
            "inputs": 2,
            "prompt_tokens": tokens,
            "completion_tokens": 0,
            "errors": 0,
            "cost": "0.00",
        }
    ]
    table = ezlink(database, "usage", "--group-by", "day")
    assert table.exit_code == 0 and "REQUESTS" in table.stdout
    missing = ezlink(database, "keys", "show", "key_missing")
    assert missing.exit_code == 1 and "no API key" in missing.output
