"""Holds and settlement: the statements that make limits impossible to overshoot.

Admission (`hold`) is one transaction of conditional UPDATEs, each of which
adds to what is held only where the room is there:

    UPDATE api_keys SET held_spend = held_spend + :a, held_tokens = held_tokens + :t
     WHERE id = :key [AND spent + held_spend + :a <= max_spend]
                     [AND used_tokens + held_tokens < quota_tokens]
    INSERT INTO holds ...
    UPDATE teams    SET held = held + :a
     WHERE id = :team AND balance - held >= :a  [AND the day's / month's budget]

A row that does not match refuses the request and rolls the transaction
back. The database checks and adds in one step (PostgreSQL locks the row
and re-evaluates the condition; SQLite has one writer), so any number of
requests in any number of processes can never hold more than is available.

Settlement (`settle`) is one transaction: the usage row (its event id makes
a retried settlement a no-op), the hold deleted, the charge taken from the
balance and the hold released, the key's spend and tokens, a ledger row.
A charge is never larger than what the hold and the balance cover, so a
balance never goes below zero. Keys are always locked before teams, and a
team's row (which all its requests share) last, so that it is held only
from its UPDATE to the COMMIT.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ezlink.accounts.keys import utcnow
from ezlink.accounts.store.billing_pg import OneStatementSteps
from ezlink.accounts.store.repository import UsageEvent, _usage_row
from ezlink.accounts.store.tables import api_keys, holds, ledger, teams, usage_events


@dataclass(frozen=True)
class Hold:
    """What one admitted request holds: money of its team, tokens of its key."""

    id: str
    key_id: str
    team_id: str | None
    amount: int
    tokens: int


class HoldRefused(Exception):
    """The room is not there; `reason` says which: balance, budget, key_cap, quota."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def periods(now: datetime) -> tuple[str, str]:
    """The UTC day and month a charge counts in: ("2026-11-29", "2026-11")."""
    day = now.strftime("%Y-%m-%d")
    return day, day[:7]


def _this_period(counter: Any, period_column: Any, period: str) -> Any:
    # A counter of an older period reads as 0: the new day starts at zero.
    return case((period_column == period, counter), else_=0)


def key_conditions(key_id: str, amount: int, quota: bool) -> list[Any]:
    """Where a key has room for a hold: its spending cap, its token quota."""
    k = api_keys.c
    conditions: list[Any] = [k.id == key_id]
    if amount > 0:
        conditions.append(k.max_spend.is_(None) | (k.spent + k.held_spend + amount <= k.max_spend))
    if quota:
        # Room left admits a request: at most one request crosses the quota.
        conditions.append(
            k.quota_tokens.is_(None) | (k.used_tokens + k.held_tokens < k.quota_tokens)
        )
    return conditions


def team_room(day: str, month: str, amount: int) -> list[Any]:
    """Where a team has room for a hold of `amount`: its balance and budgets."""
    t = teams.c
    return [
        t.balance - t.held >= amount,
        t.daily_budget.is_(None)
        | (_this_period(t.day_spent, t.spend_day, day) + t.held + amount <= t.daily_budget),
        t.monthly_budget.is_(None)
        | (_this_period(t.month_spent, t.spend_month, month) + t.held + amount <= t.monthly_budget),
    ]


def team_charge(released: int, charge: int, moment: datetime) -> dict[str, Any]:
    """A team's new values when a hold of `released` becomes a charge."""
    day, month = periods(moment)
    t = teams.c
    return {
        "held": t.held - released,
        "balance": t.balance - charge,
        "day_spent": _this_period(t.day_spent, t.spend_day, day) + charge,
        "spend_day": day,
        "month_spent": _this_period(t.month_spent, t.spend_month, month) + charge,
        "spend_month": month,
    }


async def _team_available(connection: AsyncConnection, team_id: str, key_id: str) -> int:
    """The team's available balance, its row (and its key's, first) locked on PostgreSQL."""
    query = select(teams.c.balance - teams.c.held).where(teams.c.id == team_id)
    if connection.dialect.name == "postgresql":
        await connection.execute(
            select(api_keys.c.id).where(api_keys.c.id == key_id).with_for_update()
        )
        query = query.with_for_update()
    return int((await connection.execute(query)).scalar_one_or_none() or 0)


async def _key_cap_left(connection: AsyncConnection, key_id: str) -> int | None:
    query = select(api_keys.c.max_spend - api_keys.c.spent - api_keys.c.held_spend).where(
        api_keys.c.id == key_id
    )
    value = (await connection.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)


class BillingStore:
    """Holds, settlement and the sweeper, on the accounts engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # On PostgreSQL the common cases take one statement each (billing_pg.py).
        self.one_statement = (
            OneStatementSteps(engine) if engine.dialect.name == "postgresql" else None
        )

    async def close(self) -> None:
        if self.one_statement is not None:
            await self.one_statement.close()

    async def hold(
        self,
        *,
        key_id: str,
        team_id: str | None,
        amount: int,
        tokens: int,
        quota: bool,
        ttl_s: float,
        now: datetime | None = None,
    ) -> Hold:
        """Reserve `amount` of the team's balance (and the key's cap) and
        `tokens` of the key's quota, or raise HoldRefused; one transaction."""
        now = now or utcnow()
        day, month = periods(now)
        hold = Hold("hold_" + secrets.token_hex(8), key_id, team_id, amount, tokens)
        key_where = key_conditions(key_id, amount, quota)
        key_refused = HoldRefused("quota" if quota else "key_cap")
        if self.one_statement is not None and team_id is not None and amount > 0:
            refused = await self.one_statement.hold(
                hold_id=hold.id,
                key_id=key_id,
                team_id=team_id,
                amount=amount,
                tokens=tokens,
                quota=quota,
                day=day,
                month=month,
                now=now,
                ttl_s=ttl_s,
            )
            if refused is not None:
                raise key_refused if refused == "key" else HoldRefused("balance")
            return hold
        async with self.engine.begin() as connection:
            k = api_keys.c
            found = await connection.execute(
                update(api_keys)
                .where(*key_where)
                .values(held_spend=k.held_spend + amount, held_tokens=k.held_tokens + tokens)
            )
            if found.rowcount != 1:
                raise key_refused
            await connection.execute(
                insert(holds).values(
                    id=hold.id,
                    key_id=key_id,
                    team_id=team_id,
                    amount=amount,
                    tokens=tokens,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
            # The team's row last: every request of the team waits for its
            # lock, so it is held only from here to the commit.
            if team_id is not None and amount > 0:
                found = await connection.execute(
                    update(teams)
                    .where(teams.c.id == team_id, *team_room(day, month, amount))
                    .values(held=teams.c.held + amount)
                )
                if found.rowcount != 1:
                    raise HoldRefused("balance")
        return hold

    async def settle(self, hold: Hold | None, event: UsageEvent, charge: int) -> int:
        """Turn a hold into the real charge and usage, in one transaction; the
        amount charged (`charge`, cut to what the hold and balance cover).

        Idempotent: a settlement whose usage row exists already does nothing."""
        covered = hold is not None and event.team_id is not None and charge <= hold.amount
        if self.one_statement is not None and covered and hold is not None and event.key_id:
            assert event.team_id is not None
            done = await self.one_statement.settle(
                hold_id=hold.id,
                held_amount=hold.amount,
                held_tokens=hold.tokens,
                event=event,
                team_id=event.team_id,
                day=periods(event.created_at)[0],
                month=periods(event.created_at)[1],
            )
            if done is not None:
                return charge
            # Its hold was swept meanwhile: the general path below.
        dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        async with self.engine.begin() as connection:
            inserted = await connection.execute(
                dialect.insert(usage_events)
                .on_conflict_do_nothing(index_elements=[usage_events.c.event_id])
                .returning(usage_events.c.event_id),
                [_usage_row(event)],
            )
            if inserted.first() is None:
                return event.cost
            covered_amount = covered_tokens = 0
            if hold is not None:
                row = (
                    await connection.execute(
                        delete(holds)
                        .where(holds.c.id == hold.id)
                        .returning(holds.c.amount, holds.c.tokens)
                    )
                ).first()
                if row is not None:  # else swept after its expiry: nothing held now
                    covered_amount, covered_tokens = int(row[0]), int(row[1])
            team_id = event.team_id
            if team_id is None:
                charge = 0
            elif charge > covered_amount:
                # More than held (a bound that fell short, or a swept hold):
                # charge what the key's cap and the balance still cover.
                room = await _team_available(connection, team_id, event.key_id or "")
                cap = await _key_cap_left(connection, event.key_id or "")
                if cap is not None:
                    room = min(room, cap)
                charge = max(0, min(charge, room + covered_amount))
            if charge != event.cost:
                await connection.execute(
                    update(usage_events)
                    .where(usage_events.c.event_id == event.event_id)
                    .values(cost=charge)
                )
            used = event.prompt_tokens + event.completion_tokens
            if event.key_id is not None and (charge or covered_amount or covered_tokens or used):
                k = api_keys.c
                await connection.execute(
                    update(api_keys)
                    .where(k.id == event.key_id)
                    .values(
                        held_spend=k.held_spend - covered_amount,
                        spent=k.spent + charge,
                        held_tokens=k.held_tokens - covered_tokens,
                        used_tokens=k.used_tokens + used,
                    )
                )
            # Keys before teams, as at admission; the team's row last.
            if team_id is not None and (charge or covered_amount):
                await self._charge_team(connection, team_id, covered_amount, charge, event)
        return charge

    async def _charge_team(
        self,
        connection: AsyncConnection,
        team_id: str,
        released: int,
        charge: int,
        event: UsageEvent,
    ) -> None:
        if charge:
            await connection.execute(
                insert(ledger).values(
                    event_id=event.event_id,
                    created_at=event.created_at,
                    team_id=team_id,
                    kind="charge",
                    amount=-charge,
                    key_id=event.key_id,
                    model=event.model[:200],
                )
            )
        await connection.execute(
            update(teams)
            .where(teams.c.id == team_id)
            .values(**team_charge(released, charge, event.created_at))
        )

    async def sweep(self, now: datetime | None = None) -> list[Hold]:
        """Release every hold past its expiry (a crashed process's, or one whose
        request outlived it); the holds released. Safe in many processes at
        once: DELETE ... RETURNING hands each hold to one of them."""
        now = now or utcnow()
        async with self.engine.begin() as connection:
            rows = (
                await connection.execute(
                    delete(holds)
                    .where(holds.c.expires_at < now)
                    .returning(
                        holds.c.id, holds.c.key_id, holds.c.team_id, holds.c.amount, holds.c.tokens
                    )
                )
            ).all()
            released = [Hold(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]
            await _release(connection, released, now)
        return released

    async def live_holds(self) -> int:
        async with self.engine.connect() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(holds))).scalar_one()
            )


async def _release(connection: AsyncConnection, released: Sequence[Hold], now: datetime) -> None:
    """Give back what swept holds held: keys first, then teams (the lock order)."""
    by_team: dict[str, int] = {}
    by_key: dict[str, tuple[int, int]] = {}
    for hold in released:
        if hold.team_id is not None and hold.amount:
            by_team[hold.team_id] = by_team.get(hold.team_id, 0) + hold.amount
        amount, tokens = by_key.get(hold.key_id, (0, 0))
        by_key[hold.key_id] = (amount + hold.amount, tokens + hold.tokens)
    for key_id, (amount, tokens) in sorted(by_key.items()):
        k = api_keys.c
        await connection.execute(
            update(api_keys)
            .where(k.id == key_id)
            .values(held_spend=k.held_spend - amount, held_tokens=k.held_tokens - tokens)
        )
    for hold in released:
        if hold.team_id is not None and hold.amount:
            await connection.execute(
                insert(ledger).values(
                    event_id=secrets.token_hex(16),
                    created_at=now,
                    team_id=hold.team_id,
                    kind="release",
                    amount=0,
                    key_id=hold.key_id,
                    hold_id=hold.id,
                    note=f"expired hold of {hold.amount} released",
                )
            )
    for team_id, amount in sorted(by_team.items()):
        await connection.execute(
            update(teams).where(teams.c.id == team_id).values(held=teams.c.held - amount)
        )
