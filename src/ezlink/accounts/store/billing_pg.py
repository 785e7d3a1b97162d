"""Holds and settlement on PostgreSQL, each as one statement.

The same steps as store/billing.py, each written as one statement of
data-modifying CTEs and run outside an explicit transaction: PostgreSQL
runs a statement atomically, so the BEGIN and COMMIT round trips (and the
ones of each further statement) are saved; a step costs one round trip
(plus the pool's pre-ping). The statements are built once, with bound
parameters: building SQLAlchemy expressions per request cost more than the
round trips saved; and they run on a pool of their own, in autocommit. The sub-statements run keys first, then teams, the lock
order of store/billing.py.

Where a step must fail whole after a part of it matched (the key had room
but the team had not; the hold to settle was already swept), the statement
writes a NULL into a NOT NULL column: PostgreSQL aborts it and undoes all
it did. The caller then refuses the request, or settles through the
general path, which handles a swept hold.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    String,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ezlink.accounts.store.repository import UsageEvent, _usage_row
from ezlink.accounts.store.tables import api_keys, holds, ledger, teams, usage_events


def _money(name: str) -> Any:
    return bindparam("p_" + name, type_=BigInteger())


def _text(name: str) -> Any:
    return bindparam("p_" + name, type_=String())


def _moment(name: str) -> Any:
    return bindparam("p_" + name, type_=DateTime(timezone=True))


def _this_period(counter: Any, period: Any, value: Any) -> Any:
    return case((period == value, counter), else_=literal_column("0"))


@functools.cache
def hold_statement(quota: bool) -> Any:
    """Hold `amount` of team `team_id` and key `key_id` (and `tokens` of its quota)."""
    k, t = api_keys.c, teams.c
    amount = _money("amount")
    key_where = [
        k.id == _text("key_id"),
        k.max_spend.is_(None) | (k.spent + k.held_spend + amount <= k.max_spend),
    ]
    if quota:
        key_where.append(
            k.quota_tokens.is_(None) | (k.used_tokens + k.held_tokens < k.quota_tokens)
        )
    key = (
        update(api_keys)
        .where(*key_where)
        .values(held_spend=k.held_spend + amount, held_tokens=k.held_tokens + _money("tokens"))
        .returning(k.id)
        .cte("held_key")
    )
    day, month = _text("day"), _text("month")
    team = (
        update(teams)
        .where(
            t.id == _text("team_id"),
            t.balance - t.held >= amount,
            t.daily_budget.is_(None)
            | (_this_period(t.day_spent, t.spend_day, day) + t.held + amount <= t.daily_budget),
            t.monthly_budget.is_(None)
            | (
                _this_period(t.month_spent, t.spend_month, month) + t.held + amount
                <= t.monthly_budget
            ),
            exists(select(key.c.id)),
        )
        .values(held=t.held + amount)
        .returning(t.id)
        .cte("held_team")
    )
    # No room in the team after the key matched: a NULL id aborts it all.
    row = select(
        case((exists(select(team.c.id)), _text("hold_id")), else_=null()),
        _text("key_id"),
        _text("team_id"),
        amount,
        _money("tokens"),
        _moment("now"),
        _moment("expires_at"),
    ).select_from(key)
    columns = ["id", "key_id", "team_id", "amount", "tokens", "created_at", "expires_at"]
    return insert(holds).from_select(columns, row).returning(holds.c.id).add_cte(team)


@functools.cache
def settle_statement(charged: bool) -> Any:
    """Settle hold `hold_id` (`held_amount`, `held_tokens`) into `charge`, with
    the usage row (`u_*` parameters) and, when `charged`, a ledger row."""
    usage_columns = list(_usage_row(_EXAMPLE))
    written = (
        insert(usage_events)
        .values(
            {
                name: bindparam(f"p_u_{name}", type_=usage_events.c[name].type)
                for name in usage_columns
            }
        )
        .on_conflict_do_nothing(index_elements=[usage_events.c.event_id])
        .returning(usage_events.c.event_id)
        .cte("written")
    )
    was_written = exists(select(written.c.event_id))
    hold = (
        delete(holds)
        .where(holds.c.id == _text("hold_id"), was_written)
        .returning(holds.c.amount)
        .cte("settled_hold")
    )
    has_hold = exists(select(hold.c.amount))
    k, t = api_keys.c, teams.c
    charge = _money("charge")
    key = (
        update(api_keys)
        .where(k.id == _text("u_key_id"), was_written)
        .values(
            held_spend=k.held_spend - _money("held_amount"),
            held_tokens=k.held_tokens - _money("held_tokens"),
            used_tokens=k.used_tokens + _money("used"),
            # The hold is gone (swept): a NULL aborts the statement.
            spent=case((has_hold, k.spent + charge), else_=null()),
        )
        .returning(k.id)
        .cte("charged_key")
    )
    ctes: list[Any] = [hold, key]
    if charged:
        entry = select(
            _text("u_event_id"),
            _moment("u_created_at"),
            _text("team_id"),
            _text("kind"),
            -charge,
            _text("u_key_id"),
            _text("u_model"),
        ).where(has_hold)
        columns = ["event_id", "created_at", "team_id", "kind", "amount", "key_id", "model"]
        ctes.append(insert(ledger).from_select(columns, entry).returning(ledger.c.id).cte("entry"))
    day, month = _text("day"), _text("month")
    # PostgreSQL runs the CTEs no query reads last-first: the team's depends
    # on the key's, so that the key is locked first (the lock order).
    ctes.append(
        update(teams)
        .where(t.id == _text("team_id"), has_hold, exists(select(key.c.id)))
        .values(
            held=t.held - _money("held_amount"),
            balance=t.balance - charge,
            day_spent=_this_period(t.day_spent, t.spend_day, day) + charge,
            spend_day=day,
            month_spent=_this_period(t.month_spent, t.spend_month, month) + charge,
            spend_month=month,
        )
        .returning(t.id)
        .cte("charged_team")
    )
    return select(func.count()).select_from(written).add_cte(*ctes)


_EXAMPLE = UsageEvent(
    created_at=datetime(2026, 1, 1),
    key_id=None,
    model="",
    inputs=0,
    prompt_tokens=0,
    status=0,
    latency_ms=0.0,
)


class OneStatementSteps:
    """`hold` and `settle` in one round trip each (PostgreSQL only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        # A pool of its own, in autocommit: switching a shared connection's
        # isolation level at every checkout and checkin cost 0.45 ms a step.
        self.engine = create_async_engine(
            engine.url, pool_pre_ping=True, isolation_level="AUTOCOMMIT"
        )

    async def close(self) -> None:
        await self.engine.dispose()

    async def hold(
        self,
        *,
        hold_id: str,
        key_id: str,
        team_id: str,
        amount: int,
        tokens: int,
        quota: bool,
        day: str,
        month: str,
        now: datetime,
        ttl_s: float,
    ) -> str | None:
        """Hold as store/billing.py does; "key" or "team" when refused there, else None."""
        values = {
            "hold_id": hold_id,
            "key_id": key_id,
            "team_id": team_id,
            "amount": amount,
            "tokens": tokens,
            "day": day,
            "month": month,
            "now": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        }
        parameters = {"p_" + name: value for name, value in values.items()}
        try:
            async with self.engine.connect() as connection:
                found = (await connection.execute(hold_statement(quota), parameters)).first()
        except IntegrityError:
            return "team"
        return None if found is not None else "key"

    async def settle(
        self,
        *,
        hold_id: str,
        held_amount: int,
        held_tokens: int,
        event: UsageEvent,
        team_id: str,
        day: str,
        month: str,
    ) -> bool | None:
        """Settle a hold that covers its charge (`event.cost`): True when done,
        False when it was settled already, None when its hold is gone (swept:
        the general path must settle it)."""
        values: dict[str, Any] = {f"u_{name}": value for name, value in _usage_row(event).items()}
        values.update(
            hold_id=hold_id,
            held_amount=held_amount,
            held_tokens=held_tokens,
            charge=event.cost,
            used=event.prompt_tokens + event.completion_tokens,
            team_id=team_id,
            kind="charge",
            day=day,
            month=month,
        )
        values["u_model"] = values["u_model"][:200]
        try:
            async with self.engine.connect() as connection:
                statement = settle_statement(event.cost > 0)
                parameters = {"p_" + name: value for name, value in values.items()}
                inserted = (await connection.execute(statement, parameters)).scalar_one()
        except IntegrityError:
            return None
        return bool(inserted)
