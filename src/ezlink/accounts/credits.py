"""Credits on the request path: hold at admission, settle when done.

A key with a team (billed) or a token quota reserves in the database before
its request runs (`reserve`: one transaction, see store/billing.py) and
settles in one transaction that also writes its usage row (`settle`), so
the row exists before the answer leaves. Keys with neither never touch the
database here: their usage takes the journaled, batched path (usage.py).
"""

from __future__ import annotations

import logging

from ezlink.accounts.billing import PriceBook, charge_micros, hold_micros
from ezlink.accounts.meter import CLIENT_CLOSED, Meter
from ezlink.accounts.money import format_money
from ezlink.accounts.store.billing import BillingStore, HoldRefused
from ezlink.accounts.store.ledger import LedgerStore
from ezlink.accounts.store.repository import UsageEvent
from ezlink.config import BillingConfig, PriceConfig
from ezlink.errors import QuotaExceededError

logger = logging.getLogger(__name__)

REFUSALS = {
    "balance": "the team's available balance (or its daily or monthly budget) cannot cover it",
    "key_cap": "this key's spending cap cannot cover it",
    "quota": "this key has no token quota left",
}


def insufficient_quota(reason: str, amount: int, currency: str) -> QuotaExceededError:
    held = f" (it may cost up to {format_money(amount)} {currency})" if amount else ""
    return QuotaExceededError(
        f"You exceeded your current quota: {REFUSALS[reason]}{held}.",
        headers={"x-should-retry": "false"},
    )


def charge_of(meter: Meter) -> int:
    """What a settled request owes: all of it when answered; what was produced
    when its client left; nothing when it failed or was refused."""
    if meter.price is None:
        return 0
    if meter.status == 200:
        return charge_micros(meter.price, meter.tokens, meter.units, meter.bound.action)
    if meter.status == CLIENT_CLOSED and (meter.tokens.total or meter.units.unit):
        return charge_micros(meter.price, meter.tokens, meter.units, meter.bound.action)
    return 0


class Credits:
    """Prices, holds and settlement; the teams' ledger for the admin side."""

    def __init__(self, billing: BillingStore, ledger: LedgerStore) -> None:
        self.billing = billing
        self.ledger = ledger
        self.config = BillingConfig()
        self.prices = PriceBook({})

    def configure(self, config: BillingConfig, models: object) -> None:
        """Take the billing settings and the models' prices (once, from the settings)."""
        self.config = config
        self.prices = PriceBook.from_models(models if isinstance(models, list) else [])

    def price(self, model: str) -> PriceConfig | None:
        return self.prices.price(model)

    async def reserve(self, meter: Meter) -> None:
        """Hold the request's most cost and reserve its tokens, or raise 429
        insufficient_quota; nothing when the key needs neither."""
        limits, key_id = meter.limits, meter.key_id
        if limits is None or key_id is None or not limits.reserves:
            return
        amount = hold_micros(meter.price, meter.bound) if limits.team_id is not None else 0
        quota = limits.quota_tokens is not None
        if amount == 0 and not quota:
            return  # a free model for a team's key: nothing to hold
        try:
            meter.hold = await self.billing.hold(
                key_id=key_id,
                team_id=limits.team_id,
                amount=amount,
                tokens=meter.reserved_tokens if quota else 0,
                quota=quota,
                ttl_s=self.config.hold_ttl_s,
            )
        except HoldRefused as refused:
            raise insufficient_quota(refused.reason, amount, self.config.currency) from None
        meter.reserved = True

    async def settle(self, meter: Meter, event: UsageEvent) -> int:
        """Settle a reserved request and write its usage row; the charge."""
        return await self.billing.settle(meter.hold, event, event.cost)
