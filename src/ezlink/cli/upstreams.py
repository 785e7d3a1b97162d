"""`ezlink upstreams`: ask a running server how its upstreams are doing."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from ezlink.cli.common import fail

COLUMNS = ("name", "state", "latency", "calls", "failures", "last error")


def _row(upstream: dict[str, Any]) -> tuple[str, ...]:
    latency = upstream.get("latency_ewma_ms")
    state = str(upstream.get("state"))
    if state == "open":
        state += f" ({upstream.get('retry_in_s', 0):.0f}s)"
    return (
        str(upstream.get("name")),
        state,
        "-" if latency is None else f"{latency:.0f} ms",
        str(upstream.get("calls")),
        str(upstream.get("failures")),
        upstream.get("last_error") or "-",
    )


def format_table(upstreams: list[dict[str, Any]]) -> str:
    rows = [COLUMNS, *(_row(u) for u in upstreams)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


def show_upstreams(
    url: Annotated[
        str,
        typer.Option(envvar="EZLINK_URL", help="The server's base URL."),
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(envvar="EZLINK_MASTER_KEY", help="The master key.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show each upstream's state (up, open circuit, half-open), latency and last error."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(url.rstrip("/") + "/admin/upstreams", headers=headers, timeout=10)
    except httpx.TransportError as exc:
        raise fail(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise fail(f"{url}: HTTP {response.status_code}: {message}")
    upstreams = response.json()["data"]
    if as_json:
        typer.echo(json.dumps(upstreams, indent=2))
    elif not upstreams:
        typer.echo("no upstreams configured")
    else:
        typer.echo(format_table(upstreams))
