"""Where the accounts database is, how to connect, and bringing it up to date."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
DATABASE_FILE = "ezlink.db"
# Any constant works; it names the lock that serializes migrations on PostgreSQL
# when several replicas start at once.
PG_MIGRATION_LOCK = 0x657A6C696E6B
# How long a SQLite writer waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$EZLINK_DATA_DIR, else $XDG_DATA_HOME/ezlink, else ~/.local/share/ezlink."""
    environ = os.environ if environ is None else environ
    if environ.get("EZLINK_DATA_DIR"):
        return Path(environ["EZLINK_DATA_DIR"])
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ezlink"


def default_database_url(environ: Mapping[str, str] | None = None) -> str:
    return f"sqlite+aiosqlite:///{data_dir(environ) / DATABASE_FILE}"


def async_url(url: str) -> str:
    """Accept the plain URLs people write and pick the async driver for them."""
    parsed = make_url(url)
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    if parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_file(engine: AsyncEngine) -> Path | None:
    database = engine.url.database
    return None if not database or database == ":memory:" else Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes a
    # second process wait for the write lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still survives a crash of the process (a power cut
    # may lose the last commits) and saves an fsync on every commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    # A server's connection can drop (restart, failover): test it on checkout.
    # A SQLite file cannot, and the test would cost a round trip per query.
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if is_sqlite(engine):
        path = _sqlite_file(engine)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
    return engine


def _upgrade(connection: Connection, revision: str) -> None:
    # Imported here: Alembic costs half a second of every CLI command's start.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _upgrade_in_transaction(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        if not is_sqlite(engine):
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})"))
        await connection.run_sync(_upgrade, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or to `revision`); safe when
    replicas start together."""
    path = _sqlite_file(engine) if is_sqlite(engine) else None
    if path is None:
        await _upgrade_in_transaction(engine, revision)
        return
    # SQLite has no advisory locks: a lock file beside the database serializes
    # the processes that start at once (flock blocks, so it waits in a thread).
    with (path.with_name(path.name + ".migrate.lock")).open("a") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            await _upgrade_in_transaction(engine, revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
