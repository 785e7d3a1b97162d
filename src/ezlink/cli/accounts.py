"""`ezlink keys ...` and `ezlink usage`: the accounts database, from the shell.

These talk to the database directly (the same EZLINK_DATABASE_URL / config
as the server), so they work with the server stopped and need no master key:
whoever can read the database is already its administrator.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from ezlink.accounts.keys import ApiKey, as_utc
from ezlink.cli.common import ConfigOption, fail, settings_or_exit, with_accounts_store

if TYPE_CHECKING:
    from ezlink.accounts.store.repository import AccountsStore

T = TypeVar("T")
# `keys update --clear` names → the key fields they reset to "no limit".
CLEARABLE = {"rpm": "rpm", "tpm": "tpm", "quota": "quota_tokens", "expiry": "expires_at"}

keys_app = typer.Typer(help="Issue and manage API keys.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
KeyArgument = Annotated[str, typer.Argument(help="The key's id (key_...) or display prefix.")]
ModelsOption = Annotated[
    str | None, typer.Option("--models", help="Comma-separated public model names (empty: all).")
]
RpmOption = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")]
TpmOption = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute.")]
QuotaOption = Annotated[
    int | None, typer.Option("--quota-tokens", min=0, help="Total token budget.")
]
ExpiresOption = Annotated[
    str | None, typer.Option("--expires", help="Expiry, ISO 8601 date or time (UTC).")
]
OwnerOption = Annotated[str | None, typer.Option("--owner", help="Who the key is for.")]


def _with_store(config: Path | None, work: Callable[[AccountsStore], Awaitable[T]]) -> T:
    return with_accounts_store(settings_or_exit(config), work)


def _date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise fail(f"{name}: not an ISO 8601 date or time: {value!r}") from None


def _models(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def _print_key(key: ApiKey, as_json: bool, secret: str | None = None) -> None:
    data: dict[str, Any] = key.to_public()
    if secret is not None:
        data["key"] = secret
    if as_json:
        typer.echo(json.dumps(data))
        return
    if secret is not None:
        typer.echo(secret)
        typer.echo("(shown once: store it now)", err=True)
        return
    for name, value in data.items():
        typer.echo(f"{name + ':':16}{'' if value is None else value}")


async def _existing(store: AccountsStore, key_id: str) -> ApiKey:
    key = await store.get_key(key_id)
    if key is None:
        raise fail(f"no API key {key_id!r}")
    return key


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for the key.")],
    owner: OwnerOption = None,
    models: ModelsOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    quota_tokens: QuotaOption = None,
    expires: ExpiresOption = None,
    team: Annotated[str | None, typer.Option("--team", help="The team that pays.")] = None,
    max_spend: Annotated[
        str | None, typer.Option("--max-spend", help="The key's own spending cap, e.g. 1.00.")
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Issue a key and print its secret (the only time it is shown)."""
    from ezlink.cli.teams import money_or_exit

    expires_at = _date(expires, "--expires")
    cap = money_or_exit(max_spend, "--max-spend")

    async def work(store: AccountsStore) -> tuple[ApiKey, str]:
        from ezlink.accounts.store.ledger import LedgerStore

        team_id = None
        if team is not None:
            found = await LedgerStore(store.engine).get_team(team)
            if found is None:
                raise fail(f"no team {team!r}")
            team_id = found.id
        return await store.create_key(
            name,
            owner=owner,
            allowed_models=_models(models),
            rpm=rpm,
            tpm=tpm,
            quota_tokens=quota_tokens,
            expires_at=expires_at,
            team_id=team_id,
            max_spend=cap,
        )

    key, secret = _with_store(config, work)
    _print_key(key, as_json, secret)


@keys_app.command("list")
def list_keys(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Every key (never the secrets)."""
    keys = _with_store(config, lambda store: store.list_keys())
    if as_json:
        typer.echo(json.dumps([key.to_public() for key in keys]))
        return
    typer.echo(f"{'ID':22} {'PREFIX':13} {'STATE':9} {'USED':>10} {'QUOTA':>10}  NAME")
    for key in keys:
        quota = "-" if key.limits.quota_tokens is None else str(key.limits.quota_tokens)
        typer.echo(
            f"{key.id:22} {key.prefix:13} {key.state():9} "
            f"{key.limits.used_tokens:>10} {quota:>10}  {key.name}"
        )


@keys_app.command("show")
def show(key_id: KeyArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """One key's settings and usage counter."""
    _print_key(_with_store(config, lambda store: _existing(store, key_id)), as_json)


@keys_app.command("update")
def update_key(
    key_id: KeyArgument,
    name: Annotated[str | None, typer.Option("--name")] = None,
    owner: OwnerOption = None,
    models: ModelsOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    quota_tokens: QuotaOption = None,
    expires: ExpiresOption = None,
    disable: Annotated[bool, typer.Option("--disable", help="Refuse the key for now.")] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Accept a disabled key again.")] = False,
    clear: Annotated[
        str | None,
        typer.Option("--clear", help="Comma-separated limits to remove: rpm, tpm, quota, expiry."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change a key; only the options given change (--models '' allows every model)."""
    if disable and enable:
        raise fail("--disable and --enable contradict each other")
    changes: dict[str, Any] = {
        field: value
        for field, value in {
            "name": name,
            "owner": owner,
            "rpm": rpm,
            "tpm": tpm,
            "quota_tokens": quota_tokens,
            "expires_at": _date(expires, "--expires"),
        }.items()
        if value is not None
    }
    if models is not None:
        changes["allowed_models"] = _models(models)
    if disable or enable:
        changes["disabled"] = disable
    for name in _models(clear):
        if name not in CLEARABLE:
            raise fail(f"--clear: unknown limit {name!r} (rpm, tpm, quota, expiry)")
        changes[CLEARABLE[name]] = None

    async def work(store: AccountsStore) -> ApiKey | None:
        key = await _existing(store, key_id)
        return await store.update_key(key.id, changes)

    updated = _with_store(config, work)
    assert updated is not None
    _print_key(updated, as_json)


@keys_app.command("revoke")
def revoke(key_id: KeyArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Revoke a key for good; servers refuse it from their next request on."""

    async def work(store: AccountsStore) -> ApiKey | None:
        key = await _existing(store, key_id)
        return await store.revoke_key(key.id)

    revoked = _with_store(config, work)
    assert revoked is not None
    _print_key(revoked, as_json)


def usage(
    key: Annotated[str | None, typer.Option("--key", help="Only this key (id or prefix).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this date/time (UTC).")] = None,
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="day, key, model or team.")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None,
    cost: Annotated[bool, typer.Option("--cost", help="Show the cost column.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Recorded usage: requests, inputs, prompt tokens, errors (and --cost)."""
    from ezlink.accounts.money import format_money

    if group_by not in (None, "day", "key", "model", "team"):
        raise fail("--group-by must be day, key, model or team")
    grouping: Literal["day", "key", "model", "team"] | None = group_by  # type: ignore[assignment]
    since_at = _date(since, "--since")

    async def work(store: AccountsStore) -> list[dict[str, Any]]:
        from ezlink.accounts.store.ledger import LedgerStore

        key_id = None if key is None else (await _existing(store, key)).id
        team_id = None
        if team is not None:
            found = await LedgerStore(store.engine).get_team(team)
            if found is None:
                raise fail(f"no team {team!r}")
            team_id = found.id
        return await store.usage(
            key_id=key_id, model=model, since=since_at, group_by=grouping, team_id=team_id
        )

    rows = [{**row, "cost": format_money(row["cost"])} for row in _with_store(config, work)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if as_csv:
        from ezlink.accounts.store.reports import usage_csv

        typer.echo(usage_csv(rows), nl=False)
        return
    label = group_by or "total"
    extra = f" {'COST':>14}" if cost else ""
    typer.echo(
        f"{label.upper():24} {'REQUESTS':>9} {'INPUTS':>9} {'TOKENS':>12} {'ERRORS':>7}{extra}"
    )
    for row in rows:
        extra = f" {row['cost']:>14}" if cost else ""
        typer.echo(
            f"{row.get(group_by, 'all') if group_by else 'all'!s:24} {row['requests']:>9} "
            f"{row['inputs']:>9} {row['prompt_tokens']:>12} {row['errors']:>7}{extra}"
        )
