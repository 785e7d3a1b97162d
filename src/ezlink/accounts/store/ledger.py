"""Teams, their ledger, redemption codes, and the check that the two agree.

Every movement of a balance is an append-only ledger row with a unique
event id, written in the same transaction as the change of the team's
stored balance; `verify` recomputes every balance from the rows.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ezlink.accounts.keys import utcnow
from ezlink.accounts.store.billing import periods
from ezlink.accounts.store.tables import (
    api_keys,
    holds,
    ledger,
    redemption_codes,
    teams,
    usage_events,
)
from ezlink.accounts.teams import Team, new_team_id

# Kinds of ledger rows; all but `release` move the balance by their amount.
KINDS = ("topup", "redeem", "charge", "refund", "adjustment", "release")
CODE_PREFIX = "ezr-"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8", "surrogateescape")).hexdigest()


def _team_from_row(row: RowMapping, now: datetime) -> Team:
    day, month = periods(now)
    return Team(
        id=row["id"],
        name=row["name"],
        balance=int(row["balance"]),
        held=int(row["held"]),
        daily_budget=row["daily_budget"],
        monthly_budget=row["monthly_budget"],
        spent_today=int(row["day_spent"]) if row["spend_day"] == day else 0,
        spent_this_month=int(row["month_spent"]) if row["spend_month"] == month else 0,
        created_at=row["created_at"],
    )


async def _move(
    connection: AsyncConnection,
    team_id: str,
    kind: str,
    amount: int,
    *,
    note: str | None = None,
    key_id: str | None = None,
) -> None:
    """A ledger row and the same change of the stored balance."""
    await connection.execute(
        update(teams).where(teams.c.id == team_id).values(balance=teams.c.balance + amount)
    )
    await connection.execute(
        insert(ledger).values(
            event_id=uuid.uuid4().hex,
            created_at=utcnow(),
            team_id=team_id,
            kind=kind,
            amount=amount,
            key_id=key_id,
            note=None if note is None else note[:500],
        )
    )


@dataclass(frozen=True)
class Difference:
    """One disagreement `verify` found."""

    team: str
    what: str
    stored: int
    computed: int


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- teams --------------------------------------------------------------

    async def create_team(
        self,
        name: str,
        *,
        balance: int = 0,
        daily_budget: int | None = None,
        monthly_budget: int | None = None,
    ) -> Team:
        team_id = new_team_id()
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(teams).values(
                    id=team_id,
                    name=name,
                    created_at=utcnow(),
                    balance=0,
                    held=0,
                    daily_budget=daily_budget,
                    monthly_budget=monthly_budget,
                    day_spent=0,
                    month_spent=0,
                )
            )
            if balance:
                await _move(connection, team_id, "topup", balance, note="opening balance")
        team = await self.get_team(team_id)
        assert team is not None
        return team

    async def get_team(self, name_or_id: str) -> Team | None:
        async with self.engine.connect() as connection:
            row = (
                (
                    await connection.execute(
                        select(teams).where(
                            or_(teams.c.id == name_or_id, teams.c.name == name_or_id)
                        )
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _team_from_row(row, utcnow())

    async def list_teams(self) -> list[Team]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(teams).order_by(teams.c.name))).mappings().all()
        now = utcnow()
        return [_team_from_row(row, now) for row in rows]

    async def update_budgets(self, team_id: str, changes: dict[str, int | None]) -> Team | None:
        allowed = {
            name: value
            for name, value in changes.items()
            if name in ("daily_budget", "monthly_budget")
        }
        if allowed:
            async with self.engine.begin() as connection:
                await connection.execute(
                    update(teams).where(teams.c.id == team_id).values(**allowed)
                )
        return await self.get_team(team_id)

    async def move(self, team_id: str, kind: str, amount: int, note: str | None = None) -> Team:
        """Top up (or refund, adjust) a team's balance by `amount` micro-units."""
        if kind not in KINDS or kind in ("charge", "release"):
            raise ValueError(f"not a manual ledger kind: {kind}")
        async with self.engine.begin() as connection:
            await _move(connection, team_id, kind, amount, note=note)
        team = await self.get_team(team_id)
        assert team is not None
        return team

    async def charged_total(self, team_id: str) -> int:
        """Everything charged to a team so far (less nothing: refunds are separate rows)."""
        query = select(func.coalesce(func.sum(-ledger.c.amount), 0)).where(
            ledger.c.team_id == team_id, ledger.c.kind == "charge"
        )
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def entries(self, team_id: str, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            select(ledger)
            .where(ledger.c.team_id == team_id)
            .order_by(ledger.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [dict(row) for row in rows]

    # -- redemption codes -----------------------------------------------------

    async def create_codes(self, value: int, count: int) -> list[str]:
        """`count` new codes worth `value` each; the codes are returned once, only their hashes kept."""
        codes = [CODE_PREFIX + secrets.token_urlsafe(18) for _ in range(count)]
        now = utcnow()
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(redemption_codes),
                [
                    {
                        "id": "code_" + secrets.token_hex(8),
                        "code_hash": hash_code(code),
                        "value": value,
                        "created_at": now,
                    }
                    for code in codes
                ],
            )
        return codes

    async def redeem(self, code: str, team_id: str, key_id: str | None = None) -> int | None:
        """Add a code's value to a team, once; the value, or None (unknown or used)."""
        c = redemption_codes.c
        async with self.engine.begin() as connection:
            found = await connection.execute(
                update(redemption_codes)
                .where(c.code_hash == hash_code(code), c.redeemed_at.is_(None))
                .values(redeemed_at=utcnow(), team_id=team_id, key_id=key_id)
                .returning(c.value, c.id)
            )
            row = found.first()
            if row is None:
                return None
            await _move(
                connection, team_id, "redeem", int(row[0]), note=f"code {row[1]}", key_id=key_id
            )
        return int(row[0])

    # -- the check ----------------------------------------------------------------

    async def verify(self) -> list[Difference]:
        """Recompute what the stored counters say from the rows they sum:
        balance = Σ ledger, held = Σ live holds (teams and keys), and Σ charges
        = Σ usage cost, per team. Empty when all agree."""
        async with self.engine.connect() as connection:
            stored = (
                await connection.execute(
                    select(teams.c.id, teams.c.name, teams.c.balance, teams.c.held)
                )
            ).all()
            sums = await _sums(connection, ledger.c.team_id, ledger.c.amount)
            charges = await _sums(
                connection, ledger.c.team_id, -ledger.c.amount, ledger.c.kind == "charge"
            )
            held = await _sums(connection, holds.c.team_id, holds.c.amount)
            costs = await _sums(connection, usage_events.c.team_id, usage_events.c.cost)
            key_rows = (
                await connection.execute(
                    select(api_keys.c.id, api_keys.c.held_spend, api_keys.c.held_tokens)
                )
            ).all()
            key_money = await _sums(connection, holds.c.key_id, holds.c.amount)
            key_tokens = await _sums(connection, holds.c.key_id, holds.c.tokens)
        found: list[Difference] = []
        for team_id, name, balance, team_held in stored:
            checks = (
                ("balance", int(balance), sums.get(team_id, 0)),
                ("held", int(team_held), held.get(team_id, 0)),
                ("charges", charges.get(team_id, 0), costs.get(team_id, 0)),
            )
            found += [Difference(name, what, a, b) for what, a, b in checks if a != b]
        for key_id, held_spend, held_tokens in key_rows:
            key_checks = (
                ("key_held", int(held_spend), key_money.get(key_id, 0)),
                ("key_held_tokens", int(held_tokens), key_tokens.get(key_id, 0)),
            )
            found += [Difference(key_id, what, a, b) for what, a, b in key_checks if a != b]
        return found


async def _sums(connection: AsyncConnection, group: Any, value: Any, *where: Any) -> dict[str, int]:
    query = (
        select(group, func.coalesce(func.sum(value), 0))
        .where(group.is_not(None), *where)
        .group_by(group)
    )
    return {row[0]: int(row[1]) for row in (await connection.execute(query)).all()}


__all__: Sequence[str] = ["Difference", "LedgerStore", "hash_code"]
