"""What every group of `ezlink` commands shares: the --config option and failing with a message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ezlink.config import Settings, load_settings
from ezlink.errors import ConfigError

if TYPE_CHECKING:
    from ezlink.accounts.store.repository import AccountsStore

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML or TOML config file (default: $EZLINK_CONFIG, else built-in)."
    ),
]


def fail(message: str) -> typer.Exit:
    """Print the message in red on stderr; raise the returned Exit (status 1)."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def with_accounts_store(settings: Settings, work: Callable[[AccountsStore], Awaitable[T]]) -> T:
    """Run `work` against the accounts database, migrated first as the server does."""
    # Imported here: SQLAlchemy and Alembic cost every other command half a second.
    from ezlink.accounts.store.database import default_database_url, make_engine, migrate
    from ezlink.accounts.store.repository import AccountsStore

    async def run() -> T:
        engine = make_engine(settings.accounts.database_url or default_database_url())
        try:
            # A fresh database gets its tables, as at the server's start.
            await migrate(engine)
            return await work(AccountsStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def any_key_issued(settings: Settings) -> bool:
    """Whether the accounts database holds a key ever issued (revoked ones count:
    a server with issued keys never reopens to anonymous callers)."""
    from ezlink.accounts.service import DATABASE_ERRORS

    try:
        return with_accounts_store(settings, lambda store: store.any_keys())
    except DATABASE_ERRORS as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise fail(f"Cannot read the accounts database to look for issued keys: {reason}") from None
