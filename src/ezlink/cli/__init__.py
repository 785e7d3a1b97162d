"""The `ezlink` command: one module per command group, wired here.

serve (cli.serve), embed / models / config check (cli.models), keys and
usage (cli.accounts), upstreams (cli.upstreams); cli.common holds what they
share (the --config option, failing with one line, the accounts store).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from ezlink import __version__
from ezlink.cli.accounts import keys_app, usage
from ezlink.cli.models import config_app, embed, list_models
from ezlink.cli.serve import serve
from ezlink.cli.teams import codes_app, ledger_app, teams_app
from ezlink.cli.upstreams import show_upstreams

app = typer.Typer(
    help="ezlink: an OpenAI-compatible API gateway with local models.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve)
app.command()(embed)
app.command("models")(list_models)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.command("usage")(usage)
app.add_typer(teams_app, name="teams")
app.add_typer(ledger_app, name="ledger")
app.add_typer(codes_app, name="codes")
app.command("upstreams")(show_upstreams)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ezlink {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """ezlink: an OpenAI-compatible embeddings server and API gateway."""


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
