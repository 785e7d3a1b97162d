"""What every group of `ezlink` commands shares: the --config option and failing with a message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ezlink.config import Settings, load_settings
from ezlink.errors import ConfigError

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


def any_key_issued(settings: Settings) -> bool:
    """Whether the accounts database holds a key ever issued (revoked ones count:
    a server with issued keys never reopens to anonymous callers)."""
    # Imported here: SQLAlchemy and Alembic cost every other command half a second.
    from ezlink.accounts.service import DATABASE_ERRORS
    from ezlink.accounts.store.database import default_database_url, make_engine, migrate
    from ezlink.accounts.store.repository import AccountsStore

    async def ask() -> bool:
        engine = make_engine(settings.accounts.database_url or default_database_url())
        try:
            # The server migrates at start anyway; a fresh database has no keys.
            await migrate(engine)
            return await AccountsStore(engine).any_keys()
        finally:
            await engine.dispose()

    try:
        return asyncio.run(ask())
    except DATABASE_ERRORS as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise fail(f"Cannot read the accounts database to look for issued keys: {reason}") from None
