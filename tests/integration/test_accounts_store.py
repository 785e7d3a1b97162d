"""The accounts store on a real database: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ezlink.accounts.keys import utcnow
from ezlink.accounts.service import Accounts
from ezlink.accounts.store.database import make_engine, migrate
from ezlink.accounts.store.repository import AccountsStore, UsageEvent
from ezlink.accounts.store.tables import metadata, usage_events
from ezlink.config import AccountsConfig
from ezlink.errors import ModelNotFoundError, OverloadedError


def event(key_id: str | None, tokens: int, **fields: object) -> UsageEvent:
    values: dict[str, object] = {
        "created_at": utcnow(),
        "key_id": key_id,
        "model": "m",
        "inputs": 1,
        "prompt_tokens": tokens,
        "status": 200,
        "latency_ms": 1.0,
    }
    values.update(fields)
    return UsageEvent(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="function")
async def accounts(database_url: str) -> AsyncIterator[Accounts]:
    service = Accounts.from_config(AccountsConfig(database_url=database_url))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def test_a_created_key_is_found_by_its_secret_only(accounts: Accounts) -> None:
    key, secret = await accounts.store.create_key("ci", owner="team-a", allowed_models=["m"])
    found = await accounts.find_key(secret)
    assert found is not None and found.id == key.id
    assert found.owner == "team-a" and found.allowed_models == ("m",)
    assert await accounts.find_key(secret + "x") is None
    assert await accounts.store.get_key(key.prefix) == found


async def test_revoke_disable_and_expiry_change_the_state_at_once(accounts: Accounts) -> None:
    key, secret = await accounts.store.create_key("k")
    await accounts.store.update_key(key.id, {"disabled": True})
    assert (await accounts.find_key(secret)).state() == "disabled"  # type: ignore[union-attr]
    await accounts.store.update_key(key.id, {"disabled": False})
    assert (await accounts.find_key(secret)).state() == "active"  # type: ignore[union-attr]
    past = utcnow() - timedelta(minutes=1)
    await accounts.store.update_key(key.id, {"expires_at": past})
    assert (await accounts.find_key(secret)).state() == "expired"  # type: ignore[union-attr]
    await accounts.store.update_key(key.id, {"expires_at": None})
    await accounts.store.revoke_key(key.id)
    assert (await accounts.find_key(secret)).state() == "revoked"  # type: ignore[union-attr]


async def test_update_refuses_fields_that_are_not_settings(accounts: Accounts) -> None:
    key, _ = await accounts.store.create_key("k")
    with pytest.raises(ValueError):
        await accounts.store.update_key(key.id, {"used_tokens": 0})


async def test_concurrent_charges_add_up_exactly(accounts: Accounts) -> None:
    key, _ = await accounts.store.create_key("k", quota_tokens=10**9)
    await asyncio.gather(*(accounts.store.charge(key.id, n) for n in range(1, 51)))
    stored = await accounts.store.get_key(key.id)
    assert stored is not None and stored.limits.used_tokens == sum(range(1, 51))


async def test_flushed_usage_is_counted_once_and_grouped(accounts: Accounts) -> None:
    a, _ = await accounts.store.create_key("a")
    b, _ = await accounts.store.create_key("b")
    for tokens in (3, 4, 5):
        accounts.recorder.record(event(a.id, tokens, model="m1"))
    accounts.recorder.record(event(b.id, 7, model="m2", status=400))
    await accounts.recorder.flush()
    await accounts.recorder.flush()  # nothing left: no double count
    by_key = {row["key"]: row for row in await accounts.store.usage(group_by="key")}
    assert by_key[a.id]["prompt_tokens"] == 12 and by_key[a.id]["requests"] == 3
    assert by_key[b.id]["errors"] == 1
    by_model = await accounts.store.usage(group_by="model")
    assert [row["model"] for row in by_model] == ["m1", "m2"]
    (today,) = await accounts.store.usage(group_by="day")
    assert today["day"] == utcnow().date().isoformat() and today["requests"] == 4
    (only_b,) = await accounts.store.usage(key_id=b.id)
    assert only_b["prompt_tokens"] == 7
    assert await accounts.store.usage(since=utcnow() + timedelta(hours=1)) == [
        {
            "requests": 0,
            "inputs": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "errors": 0,
            "cost": 0,
        }
    ]
    stored = await accounts.store.get_key(a.id)
    assert stored is not None and stored.limits.used_tokens == 12


async def test_events_charged_at_request_time_are_not_charged_again(accounts: Accounts) -> None:
    key, _ = await accounts.store.create_key("q", quota_tokens=100)
    await accounts.store.charge(key.id, 9)
    accounts.recorder.record(event(key.id, 9, charged=True))
    await accounts.recorder.flush()
    stored = await accounts.store.get_key(key.id)
    assert stored is not None and stored.limits.used_tokens == 9


async def test_stop_writes_the_usage_still_pending(database_url: str) -> None:
    config = AccountsConfig(database_url=database_url, usage_flush_interval_s=3600)
    service = Accounts.from_config(config)
    await service.start()
    for _ in range(25):
        service.recorder.record(event(None, 2))
    assert service.recorder.pending == 25
    await service.stop()
    reopened = Accounts.from_config(config)
    await reopened.start()
    try:
        (total,) = await reopened.store.usage()
        assert total["requests"] == 25 and total["prompt_tokens"] == 50
    finally:
        await reopened.stop()


async def test_migrating_again_or_concurrently_is_harmless(database_url: str) -> None:
    engines = [make_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        await migrate(engines[0])
        assert await AccountsStore(engines[0]).list_keys() == []
    finally:
        for engine in engines:
            await engine.dispose()


def dump(database_url: str, postgres: object) -> str:
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        return subprocess.run(
            ["sqlite3", path, ".dump"], capture_output=True, text=True, check=False
        ).stdout or open(path, "rb").read().decode("latin-1")
    return postgres.dump(database_url)  # type: ignore[attr-defined]


async def test_the_secret_is_not_stored_anywhere_in_the_database(
    accounts: Accounts,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    key, secret = await accounts.store.create_key("k")
    accounts.recorder.record(event(key.id, 5))
    await accounts.recorder.flush()
    postgres = (
        None if database_url.startswith("sqlite") else request.getfixturevalue("postgres_server")
    )
    await accounts.store.engine.dispose()  # SQLite: checkpoint the WAL into the file
    text = dump(database_url, postgres)
    assert key.prefix in text
    assert secret not in text and secret[len(key.prefix) :] not in text


async def test_a_failed_flush_leaves_nothing_and_is_retried_whole(database_url: str) -> None:
    config = AccountsConfig(database_url=database_url, usage_flush_interval_s=3600)
    service = Accounts.from_config(config)
    await service.start()
    try:
        key, _ = await service.store.create_key("k")
        for tokens in (5, 6, 7):
            service.recorder.record(event(key.id, tokens))
        # A real failure mid-transaction: the counter UPDATE succeeds, the INSERT fails.
        async with service.store.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE usage_events RENAME TO usage_away"))
        with pytest.raises(SQLAlchemyError):
            await service.recorder.flush()
        assert service.recorder.pending == 3
        stored = await service.store.get_key(key.id)
        assert stored is not None and stored.limits.used_tokens == 0
        async with service.store.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE usage_away RENAME TO usage_events"))
        await service.recorder.flush()
        (total,) = await service.store.usage(key_id=key.id)
        assert total["requests"] == 3 and total["prompt_tokens"] == 18
        stored = await service.store.get_key(key.id)
        assert stored is not None and stored.limits.used_tokens == 18
    finally:
        await service.stop()


async def test_writing_the_same_usage_batch_twice_stores_and_charges_it_once(
    accounts: Accounts,
) -> None:
    # What a flush retried after a commit that landed (the connection dropped
    # after COMMIT, so the driver still raised) writes: the same events again.
    key, _ = await accounts.store.create_key("k")
    batch = [event(key.id, tokens) for tokens in (3, 4)]
    await accounts.store.write_usage(batch)
    await accounts.store.write_usage(batch)
    await accounts.store.write_usage([*batch, event(key.id, 5)])
    (total,) = await accounts.store.usage(key_id=key.id)
    assert total["requests"] == 3 and total["prompt_tokens"] == 12
    stored = await accounts.store.get_key(key.id)
    assert stored is not None and stored.limits.used_tokens == 12


async def test_every_usage_event_gets_its_own_id(accounts: Accounts) -> None:
    first, second = event(None, 1), event(None, 1)
    assert first.event_id != second.event_id and len(first.event_id) == 32
    await accounts.store.write_usage([first, second])
    (total,) = await accounts.store.usage()
    assert total["requests"] == 2


async def test_client_strings_longer_than_their_columns_are_cut_not_refused(
    accounts: Accounts,
) -> None:
    # One refused row would fail its whole batch on every retry.
    long_model, long_user = "m" * 1000, "u" * 1000
    accounts.recorder.record(event(None, 1, model=long_model, user=long_user, status=404))
    await accounts.recorder.flush()
    async with accounts.store.engine.connect() as connection:
        row = (await connection.execute(select(usage_events))).mappings().one()
    assert row["model"] == long_model[:200] and row["user"] == long_user[:256]


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_the_migrations_build_exactly_the_tables_module(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
    finally:
        await engine.dispose()


async def test_upgrading_to_event_ids_keeps_the_usage_already_recorded(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine, "0001")
        async with engine.begin() as connection:
            for tokens in (2, 3):
                await connection.execute(
                    text(
                        "INSERT INTO usage_events (created_at, key_id, model, inputs, "
                        "prompt_tokens, status, latency_ms) "
                        "VALUES (:now, 'key_old', 'm', 1, :tokens, 200, 1.0)"
                    ),
                    {"now": utcnow(), "tokens": tokens},
                )
        await migrate(engine)
        store = AccountsStore(engine)
        await store.write_usage([event("key_old", 4)])
        (total,) = await store.usage(key_id="key_old")
        assert total["requests"] == 3 and total["prompt_tokens"] == 9
        async with engine.connect() as connection:
            ids = (await connection.execute(select(usage_events.c.event_id))).scalars().all()
        assert len(set(ids)) == 3
        assert {i for i in ids if i.startswith("legacy-")} == {"legacy-1", "legacy-2"}
    finally:
        await engine.dispose()


async def test_a_refusal_is_recorded_for_a_key_with_no_tokens_and_never_charged(
    accounts: Accounts,
) -> None:
    key, _ = await accounts.store.create_key("k")
    accounts.record_refusal(
        key_id=key.id,
        model="m",
        inputs=2,
        error=OverloadedError("full"),
        started=time.perf_counter(),
    )
    accounts.record_refusal(
        key_id=None, model="m", inputs=1, error=ModelNotFoundError("m"), started=time.perf_counter()
    )
    assert accounts.recorder.pending == 1  # an anonymous request stays out
    await accounts.recorder.flush()
    (total,) = await accounts.store.usage(key_id=key.id)
    assert total == {
        "requests": 1,
        "inputs": 2,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "errors": 1,
        "cost": 0,
    }
    async with accounts.store.engine.connect() as connection:
        (status,) = (await connection.execute(select(usage_events.c.status))).scalars().all()
    assert status == 503
