"""What every group of `ezlink` commands shares: the --config option and failing with a message."""

from __future__ import annotations

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
