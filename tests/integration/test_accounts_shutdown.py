"""SIGTERM with requests in flight: every request answered 200 is in the usage table."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
from sqlalchemy import select

from ezlink.accounts.store.database import make_engine
from ezlink.accounts.store.tables import usage_events
from tests.support.server import ServerProcess, write_config

MASTER = "sk-shutdown-master-0123456789abcdef"
MODEL = "text-embedding-3-small"
REQUESTS = 60
# Answers to wait for before the signal, so that it lands mid-load.
ANSWERED_BEFORE_SIGNAL = 10


async def _load_then_sigterm(server: ServerProcess, secret: str) -> list[httpx.Response]:
    answered: list[httpx.Response] = []
    enough = asyncio.Event()
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(i: int) -> None:
            text = " ".join(["graceful shutdown keeps every answered request"] * (1 + i % 4))
            try:
                response = await client.post(
                    server.api_url + "/embeddings",
                    json={"model": MODEL, "input": [text, str(i)]},
                    headers={"Authorization": f"Bearer {secret}"},
                )
            except httpx.TransportError:
                return  # refused or cut off by the shutdown: never answered
            answered.append(response)
            if len(answered) >= ANSWERED_BEFORE_SIGNAL:
                enough.set()

        load = asyncio.gather(*(one(i) for i in range(REQUESTS)))
        await enough.wait()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        await load
    return answered


def recorded(database: str, key_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(database)
        try:
            async with engine.connect() as connection:
                query = select(usage_events).where(usage_events.c.key_id == key_id)
                return [dict(row) for row in (await connection.execute(query)).mappings()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_sigterm_during_load_loses_no_usage_of_answered_requests(database_url: str) -> None:
    # Usage is only flushed at shutdown here: what is in the table was written by it.
    config = write_config({"accounts": {"usage_flush_interval_s": 3600}})
    server = ServerProcess(
        config=config, master_key=MASTER, env={"EZLINK_DATABASE_URL": database_url}
    ).start()
    try:
        created = httpx.post(
            server.base_url + "/admin/keys", json={"name": "load"}, headers=server.headers()
        ).json()
        answered = asyncio.run(_load_then_sigterm(server, created["key"]))
        assert server.stop(timeout=60) == 0
    finally:
        server.stop()
    ok = [response for response in answered if response.status_code == 200]
    assert len(ok) >= ANSWERED_BEFORE_SIGNAL
    rows = recorded(database_url, created["id"])
    by_request = {row["request_id"]: row for row in rows}
    assert len(by_request) == len(rows)  # nothing recorded twice
    for response in ok:
        row = by_request[response.headers["x-request-id"]]
        assert row["status"] == 200
        assert row["prompt_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert len([row for row in rows if row["status"] == 200]) == len(ok)
