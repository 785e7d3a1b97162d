"""`ezlink serve`: the API server."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from ezlink.cli.common import ConfigOption, any_key_issued, fail, settings_or_exit
from ezlink.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    from ezlink.api.state import state_of
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
        state_of(application).registry, host, port, master_key_set=bool(settings.server.master_key)
    )
    logging.getLogger("ezlink.serve").info(banner.text(), extra={"details": banner.fields()})
    serve_app(application, host, port, level, settings.server)
    if state_of(application).loader.failed:
        raise typer.Exit(1)
