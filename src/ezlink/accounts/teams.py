"""Teams: who pays. A team has a balance (the sum of its ledger rows), what
its requests in flight hold, optional daily and monthly budgets, and keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from ezlink.accounts.keys import as_utc, utcnow
from ezlink.accounts.money import format_money


def new_team_id() -> str:
    return "team_" + secrets.token_hex(8)


@dataclass(frozen=True)
class Team:
    """A team as stored; money in micro-units."""

    id: str
    name: str
    balance: int = 0
    held: int = 0
    daily_budget: int | None = None
    monthly_budget: int | None = None
    spent_today: int = 0
    spent_this_month: int = 0
    created_at: datetime = field(default_factory=utcnow)

    @property
    def available(self) -> int:
        return self.balance - self.held

    def to_public(self, currency: str = "USD") -> dict[str, object]:
        """The admin API's and the CLI's view: money as decimal strings."""

        def money(value: int | None) -> str | None:
            return None if value is None else format_money(value)

        return {
            "id": self.id,
            "object": "team",
            "name": self.name,
            "currency": currency,
            "balance": money(self.balance),
            "held": money(self.held),
            "available": money(self.available),
            "daily_budget": money(self.daily_budget),
            "monthly_budget": money(self.monthly_budget),
            "spent_today": money(self.spent_today),
            "spent_this_month": money(self.spent_this_month),
            "created_at": as_utc(self.created_at).isoformat(),
        }
