"""The `ezlink` command: parse, call, print."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ezlink import __version__
from ezlink.cli.accounts import keys_app, usage
from ezlink.cli.common import ConfigOption, any_key_issued, fail, settings_or_exit
from ezlink.cli.upstreams import show_upstreams
from ezlink.errors import ConfigError, EzlinkError

if TYPE_CHECKING:
    from ezlink.engine.types import ServedModel

app = typer.Typer(
    help="ezlink: an OpenAI-compatible embeddings server and API gateway.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.command("usage")(usage)
app.command("upstreams")(show_upstreams)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def models_needed_by(model: ServedModel) -> list[ServedModel]:
    """The model, then the local models it routes to: a server's registry starts
    those for every model, but `embed` starts only what one model needs."""
    from ezlink.upstreams.routing import RoutedModel

    needed = [model]
    if isinstance(model, RoutedModel):
        for route in model.routes:
            if route.local is not None and route.local not in needed:
                needed.append(route.local)
    return needed


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


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default: 8000).")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help=(
                "Allow binding a non-loopback address with no master key and no issued key "
                "(anyone may call)."
            ),
        ),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error (default: $EZLINK_LOG_LEVEL, else info)."),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API (the built-in default model without a config)."""
    import logging

    from ezlink.app import create_app
    from ezlink.ops.banner import build_banner
    from ezlink.ops.logging import configure_logging
    from ezlink.ops.serving import serve_app

    settings = settings_or_exit(config)
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    if (
        not settings.server.master_key
        and not is_loopback(host)
        and not insecure_no_auth
        # Asked once, here: once a key was issued the server never reopens, so
        # a "yes" cannot turn into an open server later.
        and not any_key_issued(settings)
    ):
        raise fail(
            f"Refusing to serve on {host} without a key: set EZLINK_MASTER_KEY, "
            "issue a key with `ezlink keys create`, "
            "or pass --insecure-no-auth to serve without authentication."
        )
    level = (log_level or settings.server.log_level).lower()
    configure_logging(level, settings.server.log_format)
    try:
        application = create_app(settings)
    except ConfigError as exc:  # e.g. a model path with no model in it
        raise fail(str(exc)) from None
    banner = build_banner(
        application.state.registry, host, port, master_key_set=bool(settings.server.master_key)
    )
    logging.getLogger("ezlink.serve").info(banner.text(), extra={"details": banner.fields()})
    serve_app(application, host, port, level, settings.server.shutdown_grace_seconds)
    if application.state.loader.failed:
        raise typer.Exit(1)


@app.command()
def embed(
    text: Annotated[str, typer.Argument(help="The text to embed.")],
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the first model).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Embed one text in-process and print a summary of the vector."""
    import numpy as np

    from ezlink.app import build_models
    from ezlink.engine.registry import ModelRegistry
    from ezlink.engine.types import EmbedRequest

    settings = settings_or_exit(config)
    try:
        registry = ModelRegistry(build_models(settings))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    name = model or settings.models[0].id
    if name not in registry.names():
        raise fail(f"No model `{name}` in this config; it serves: {', '.join(registry.names())}.")
    served = registry.get(name)

    async def run() -> None:
        started: list[ServedModel] = []
        try:
            for needed in models_needed_by(served):
                await needed.start()
                started.append(needed)
            result = await served.embed(EmbedRequest(texts=[text]))
        finally:
            await asyncio.gather(*(m.stop() for m in started))
        vector = result.vectors[0]
        head = ", ".join(f"{v:+.4f}" for v in vector[:6])
        typer.echo(f"model:      {name}")
        typer.echo(f"dimensions: {vector.shape[0]}")
        typer.echo(f"tokens:     {result.prompt_tokens}")
        typer.echo(f"norm:       {float(np.linalg.norm(vector)):.4f}")
        typer.echo(f"vector:     [{head}, ...]")

    try:
        asyncio.run(run())
    except (EzlinkError, ConfigError) as exc:
        raise fail(getattr(exc, "message", str(exc))) from None


@app.command("models")
def list_models(config: ConfigOption = None) -> None:
    """List the public model names a config serves."""
    settings = settings_or_exit(config)
    for model in settings.models:
        aliases = f"  (aliases: {', '.join(model.aliases)})" if model.aliases else ""
        typer.echo(f"{model.id}  [{model.kind}]{aliases}")


@config_app.command("check")
def check_config(
    file: Annotated[Path, typer.Argument(help="The config file to validate.")],
) -> None:
    """Validate a config file (and find its local models' files); exit 1 naming what is wrong."""
    from ezlink.backends.model_files import locate_model
    from ezlink.config import LocalModelConfig

    settings = settings_or_exit(file)
    for model in settings.models:
        if isinstance(model, LocalModelConfig):
            try:
                locate_model(model.path, model.package)
            except ConfigError as exc:
                raise fail(f"{file}: model `{model.id}`: {exc}") from None
    names = sum(len(m.public_names) for m in settings.models)
    count = len(settings.models)
    typer.echo(f"{file}: ok ({count} model{'' if count == 1 else 's'}, {names} public names)")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
