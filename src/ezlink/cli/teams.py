"""`ezlink teams ...`, `ezlink ledger verify`, `ezlink codes create`: credits, from the shell.

Like `ezlink keys`, these work on the accounts database directly. Money is
given and shown as decimal strings of the billing currency ("2.50").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ezlink.accounts.money import parse_money
from ezlink.accounts.teams import Team
from ezlink.cli.common import ConfigOption, fail, settings_or_exit, with_accounts_store

if TYPE_CHECKING:
    from ezlink.accounts.store.ledger import LedgerStore
    from ezlink.accounts.store.repository import AccountsStore

T = TypeVar("T")

teams_app = typer.Typer(help="Teams: balances, budgets and top-ups.", no_args_is_help=True)
ledger_app = typer.Typer(help="The credits ledger.", no_args_is_help=True)
codes_app = typer.Typer(help="Redemption codes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TeamArgument = Annotated[str, typer.Argument(help="The team's name (or id).")]


def money_or_exit(value: str | None, name: str, *, signed: bool = False) -> int | None:
    if value is None:
        return None
    try:
        micros = parse_money(value)
    except ValueError as exc:
        raise fail(f"{name}: {exc}") from None
    if micros < 0 and not signed:
        raise fail(f"{name}: cannot be negative")
    return micros


def _with_ledger(config: Path | None, work: Callable[[LedgerStore], Awaitable[T]]) -> T:
    from ezlink.accounts.store.ledger import LedgerStore

    def on_store(store: AccountsStore) -> Awaitable[T]:
        return work(LedgerStore(store.engine))

    return with_accounts_store(settings_or_exit(config), on_store)


def _currency(config: Path | None) -> str:
    return settings_or_exit(config).billing.currency


def _print_team(team: Team, as_json: bool, currency: str) -> None:
    data = team.to_public(currency)
    if as_json:
        typer.echo(json.dumps(data))
        return
    for name, value in data.items():
        typer.echo(f"{name + ':':18}{'' if value is None else value}")


async def _existing(ledger: LedgerStore, name: str) -> Team:
    team = await ledger.get_team(name)
    if team is None:
        raise fail(f"no team {name!r}")
    return team


@teams_app.command("create")
def create(
    name: TeamArgument,
    balance: Annotated[str, typer.Option("--balance", help="Opening balance.")] = "0",
    daily_budget: Annotated[str | None, typer.Option("--daily-budget")] = None,
    monthly_budget: Annotated[str | None, typer.Option("--monthly-budget")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a team, with an opening balance (a top-up in the ledger)."""
    opening = money_or_exit(balance, "--balance") or 0
    daily = money_or_exit(daily_budget, "--daily-budget")
    monthly = money_or_exit(monthly_budget, "--monthly-budget")

    async def work(ledger: LedgerStore) -> Team:
        if await ledger.get_team(name) is not None:
            raise fail(f"a team {name!r} exists already")
        return await ledger.create_team(
            name, balance=opening, daily_budget=daily, monthly_budget=monthly
        )

    _print_team(_with_ledger(config, work), as_json, _currency(config))


@teams_app.command("topup")
def topup(
    name: TeamArgument,
    amount: Annotated[str, typer.Argument(help="Amount to add, e.g. 2.50.")],
    note: Annotated[str | None, typer.Option("--note", help="Kept in the ledger row.")] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="topup, refund or adjustment (may be negative).")
    ] = "topup",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Add to a team's balance: one ledger row."""
    if kind not in ("topup", "refund", "adjustment"):
        raise fail("--kind must be topup, refund or adjustment")
    micros = money_or_exit(amount, "AMOUNT", signed=kind == "adjustment") or 0

    async def work(ledger: LedgerStore) -> Team:
        team = await _existing(ledger, name)
        return await ledger.move(team.id, kind, micros, note)

    _print_team(_with_ledger(config, work), as_json, _currency(config))


@teams_app.command("show")
def show(name: TeamArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Balance, held, available, budgets, spent today and this month."""
    _print_team(
        _with_ledger(config, lambda ledger: _existing(ledger, name)), as_json, _currency(config)
    )


@teams_app.command("list")
def list_teams(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Every team and its balance."""
    teams = _with_ledger(config, lambda ledger: ledger.list_teams())
    currency = _currency(config)
    if as_json:
        typer.echo(json.dumps([team.to_public(currency) for team in teams]))
        return
    typer.echo(f"{'NAME':24} {'BALANCE':>14} {'HELD':>12} {'TODAY':>12} {'MONTH':>12}")
    for team in teams:
        data = team.to_public(currency)
        typer.echo(
            f"{team.name:24} {data['balance']!s:>14} {data['held']!s:>12} "
            f"{data['spent_today']!s:>12} {data['spent_this_month']!s:>12}"
        )


@ledger_app.command("verify")
def verify(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Recompute every balance and hold from the rows; exit 1 on any difference."""
    differences = _with_ledger(config, lambda ledger: ledger.verify())
    if as_json:
        typer.echo(
            json.dumps({"ok": not differences, "differences": [vars(d) for d in differences]})
        )
    elif not differences:
        typer.echo("ok: every balance equals its ledger, every hold is accounted for")
    for item in differences:
        typer.echo(
            f"{item.team}: {item.what} stored {item.stored}, computed {item.computed}", err=True
        )
    if differences:
        raise typer.Exit(1)


@codes_app.command("create")
def create_codes(
    value: Annotated[str, typer.Option("--value", help="What each code adds, e.g. 10.00.")],
    count: Annotated[int, typer.Option("--count", min=1, max=10_000)] = 1,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print `count` new codes, once (only their hashes are stored)."""
    micros = money_or_exit(value, "--value") or 0
    codes = _with_ledger(config, lambda ledger: ledger.create_codes(micros, count))
    if as_json:
        typer.echo(json.dumps({"value": value, "codes": codes}))
        return
    for code in codes:
        typer.echo(code)
    typer.echo("(shown once: store them now)", err=True)
