"""Credits on a real database (SQLite and PostgreSQL): holds, settlement, the
sweeper, the ledger check, budgets, caps, redemption codes and token quotas,
through `Accounts.admit` / `Accounts.settle` as every route calls them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from sqlalchemy import func, select, update

from ezlink.accounts.billing import Bound
from ezlink.accounts.journal import UsageJournal
from ezlink.accounts.keys import KeyLimits, utcnow
from ezlink.accounts.money import parse_money
from ezlink.accounts.service import Accounts, TokenCounts
from ezlink.accounts.store.repository import UsageEvent
from ezlink.accounts.store.tables import holds, ledger, teams, usage_events
from ezlink.accounts.usage import UsageRecorder
from ezlink.config import AccountsConfig, BillingConfig, PriceConfig
from ezlink.errors import QuotaExceededError

PER_REQUEST = PriceConfig(per_request="0.01")
TOKENS = PriceConfig(input_per_1m="0.15", cached_input_per_1m="0.075", output_per_1m="0.60")


@pytest_asyncio.fixture(loop_scope="function")
async def accounts(database_url: str) -> AsyncIterator[Accounts]:
    service = Accounts.from_config(AccountsConfig(database_url=database_url))
    await service.start()
    service.credits.configure(BillingConfig(hold_ttl_s=60), [])
    try:
        yield service
    finally:
        await service.stop()


async def billed_key(
    accounts: Accounts, team_id: str, **limits: int | None
) -> tuple[str, KeyLimits]:
    key, _ = await accounts.store.create_key("k", team_id=team_id, **limits)  # type: ignore[arg-type]
    return key.id, key.limits


async def call(
    accounts: Accounts,
    key_id: str,
    limits: KeyLimits,
    *,
    price: PriceConfig | None = PER_REQUEST,
    bound: Bound | None = None,
    used: TokenCounts | None = None,
    reserve: int = 0,
) -> bool:
    """One request, admitted then settled as a success; False when refused (429)."""
    try:
        meter = await accounts.admit(
            key_id=key_id,
            limits=limits,
            model="m",
            inputs=1,
            price=price,
            bound=bound,
            reserve_tokens=reserve,
        )
    except QuotaExceededError:
        return False
    await asyncio.sleep(0)  # let the other requests interleave
    await accounts.settle(meter, tokens=used or TokenCounts(prompt=1))
    return True


async def test_concurrent_requests_never_take_a_balance_below_zero(accounts: Accounts) -> None:
    # A balance for exactly 100 requests at 0.01; 200 at once from 20 keys.
    team = await accounts.credits.ledger.create_team("acme", balance=parse_money("1.00"))
    keys = [await billed_key(accounts, team.id) for _ in range(20)]
    results = await asyncio.gather(*(call(accounts, *keys[i % 20]) for i in range(200)))
    assert sum(results) == 100
    after = await accounts.credits.ledger.get_team("acme")
    assert after is not None and after.balance == 0 and after.held == 0
    assert await accounts.credits.ledger.verify() == []
    assert await accounts.credits.billing.live_holds() == 0
    await accounts.recorder.flush()  # the refusals take the batched path
    costs = await accounts.store.usage(team_id=team.id)
    assert costs[0]["cost"] == parse_money("1.00") and costs[0]["requests"] == 200


async def test_a_hold_covers_the_bound_and_the_charge_is_the_real_cost(
    accounts: Accounts,
) -> None:
    team = await accounts.credits.ledger.create_team("t", balance=parse_money("0.001"))
    key_id, limits = await billed_key(accounts, team.id)
    meter = await accounts.admit(
        key_id=key_id,
        limits=limits,
        model="m",
        inputs=1,
        price=TOKENS,
        bound=Bound(prompt_tokens=1000, output_tokens=1000),
    )
    # 1000 x 0.15 + 1000 x 0.60 micro-units held.
    held = await accounts.credits.ledger.get_team("t")
    assert held is not None and held.held == 750
    await accounts.settle(meter, tokens=TokenCounts(prompt=1000, cached=400, completion=500))
    after = await accounts.credits.ledger.get_team("t")
    # 600 x 0.15 + 400 x 0.075 + 500 x 0.60 = 420 micro-units.
    assert after is not None and after.held == 0 and after.balance == 1000 - 420
    assert await accounts.credits.ledger.verify() == []


async def test_a_request_the_balance_cannot_cover_gets_insufficient_quota(
    accounts: Accounts,
) -> None:
    team = await accounts.credits.ledger.create_team("poor", balance=parse_money("0.005"))
    key_id, limits = await billed_key(accounts, team.id)
    assert not await call(accounts, key_id, limits)
    await accounts.recorder.flush()
    rows = await accounts.store.usage(team_id=team.id)
    assert rows[0]["errors"] == 1 and rows[0]["cost"] == 0


async def test_a_failed_call_releases_everything(accounts: Accounts) -> None:
    team = await accounts.credits.ledger.create_team("t", balance=parse_money("1.00"))
    key_id, limits = await billed_key(accounts, team.id)
    meter = await accounts.admit(
        key_id=key_id, limits=limits, model="m", inputs=1, price=PER_REQUEST
    )
    await accounts.settle(meter, error=RuntimeError("upstream broke"))
    after = await accounts.credits.ledger.get_team("t")
    assert after is not None and after.balance == parse_money("1.00") and after.held == 0


async def test_a_key_cap_and_a_daily_budget_stop_spending(accounts: Accounts) -> None:
    team = await accounts.credits.ledger.create_team(
        "t", balance=parse_money("5.00"), daily_budget=parse_money("0.05")
    )
    capped_id, capped = await billed_key(accounts, team.id, max_spend=parse_money("0.02"))
    assert [await call(accounts, capped_id, capped) for _ in range(3)] == [True, True, False]
    other_id, other = await billed_key(accounts, team.id)
    assert [await call(accounts, other_id, other) for _ in range(4)] == [True, True, True, False]
    shown = await accounts.credits.ledger.get_team("t")
    assert shown is not None and shown.spent_today == parse_money("0.05")


async def test_expired_holds_are_released_by_the_sweeper(accounts: Accounts) -> None:
    team = await accounts.credits.ledger.create_team("t", balance=parse_money("1.00"))
    key_id, limits = await billed_key(accounts, team.id, quota_tokens=100)
    # Admitted, then its process "dies": the hold is never settled.
    await accounts.admit(
        key_id=key_id, limits=limits, model="m", inputs=1, price=PER_REQUEST, reserve_tokens=40
    )
    stuck = await accounts.credits.ledger.get_team("t")
    assert stuck is not None and stuck.held == parse_money("0.01")
    assert await accounts.credits.billing.sweep() == []  # not expired yet
    released = await accounts.credits.billing.sweep(utcnow() + timedelta(seconds=61))
    assert len(released) == 1 and released[0].tokens == 40
    after = await accounts.credits.ledger.get_team("t")
    assert after is not None and after.held == 0 and after.balance == parse_money("1.00")
    assert await accounts.credits.ledger.verify() == []
    async with accounts.store.engine.connect() as connection:
        kinds = (await connection.execute(select(ledger.c.kind))).scalars().all()
    assert sorted(kinds) == ["release", "topup"]


async def test_a_settlement_after_its_hold_was_swept_never_goes_below_zero(
    accounts: Accounts,
) -> None:
    team = await accounts.credits.ledger.create_team("t", balance=parse_money("0.01"))
    key_id, limits = await billed_key(accounts, team.id)
    slow = await accounts.admit(
        key_id=key_id, limits=limits, model="m", inputs=1, price=PER_REQUEST
    )
    await accounts.credits.billing.sweep(utcnow() + timedelta(seconds=61))
    assert await call(accounts, key_id, limits)  # the released balance is spent again
    await accounts.settle(slow, tokens=TokenCounts(prompt=1))
    after = await accounts.credits.ledger.get_team("t")
    assert after is not None and after.balance == 0
    assert await accounts.credits.ledger.verify() == []


async def test_a_token_quota_cannot_be_overshot_by_concurrent_requests(
    accounts: Accounts,
) -> None:
    key, _ = await accounts.store.create_key("q", quota_tokens=200)
    limits = key.limits
    # 50 at once, each reserving its bound (12) and using 10 tokens.
    results = await asyncio.gather(
        *(
            call(accounts, key.id, limits, price=None, reserve=12, used=TokenCounts(prompt=10))
            for _ in range(50)
        )
    )
    after = await accounts.store.get_key(key.id)
    assert after is not None
    assert after.limits.used_tokens == 10 * sum(results)
    # Never past the quota by more than one request; and every request the
    # quota could hold at once (200 // 12) got through.
    assert 10 * (200 // 12) <= after.limits.used_tokens <= 200 + 12
    assert await accounts.credits.ledger.verify() == []


async def test_a_price_change_applies_to_new_requests_only(accounts: Accounts) -> None:
    team = await accounts.credits.ledger.create_team("t", balance=parse_money("1.00"))
    key_id, limits = await billed_key(accounts, team.id)
    admitted = await accounts.admit(
        key_id=key_id, limits=limits, model="m", inputs=1, price=PER_REQUEST
    )
    # The price changes while it runs: it still pays the price it was admitted at.
    assert await call(accounts, key_id, limits, price=PriceConfig(per_request="0.10"))
    await accounts.settle(admitted, tokens=TokenCounts(prompt=1))
    after = await accounts.credits.ledger.get_team("t")
    assert after is not None and after.balance == parse_money("0.89")


async def test_codes_redeem_once_and_verify_catches_a_tampered_balance(
    accounts: Accounts,
) -> None:
    ledger_store = accounts.credits.ledger
    team = await ledger_store.create_team("t")
    codes = await ledger_store.create_codes(parse_money("10.00"), 3)
    assert len(set(codes)) == 3
    assert await ledger_store.redeem(codes[0], team.id) == parse_money("10.00")
    assert await ledger_store.redeem(codes[0], team.id) is None
    assert await ledger_store.redeem("ezr-unknown", team.id) is None
    await ledger_store.move(team.id, "topup", parse_money("2.50"), "wire")
    shown = await ledger_store.get_team("t")
    assert shown is not None and shown.balance == parse_money("12.50")
    assert await ledger_store.verify() == []
    async with accounts.store.engine.begin() as connection:
        await connection.execute(update(teams).values(balance=teams.c.balance + 1))
    (difference,) = await ledger_store.verify()
    assert difference.what == "balance" and difference.stored == difference.computed + 1


async def test_usage_of_a_killed_process_is_replayed_from_its_journal(
    accounts: Accounts, tmp_path: Path
) -> None:
    journal = UsageJournal(tmp_path / "journal")
    dead = UsageRecorder(accounts.store, 60, 10_000, journal)
    for tokens in range(1, 6):
        dead.record(
            UsageEvent(
                created_at=utcnow(),
                key_id=None,
                model="m",
                inputs=1,
                prompt_tokens=tokens,
                status=200,
                latency_ms=1.0,
            )
        )
    # "kill -9": nothing flushed; its open files (and so its locks) go away.
    os.close(journal._current.fd)
    survivor = UsageRecorder(accounts.store, 60, 10_000, UsageJournal(tmp_path / "journal"))
    assert await survivor.replay() == 5
    assert await survivor.replay() == 0  # replayed segments are gone
    async with accounts.store.engine.connect() as connection:
        total = (await connection.execute(select(func.sum(usage_events.c.prompt_tokens)))).scalar()
    assert total == 15


async def test_a_live_writers_journal_is_not_replayed(accounts: Accounts, tmp_path: Path) -> None:
    live = UsageRecorder(accounts.store, 60, 10_000, UsageJournal(tmp_path / "j"))
    live.record(
        UsageEvent(
            created_at=utcnow(),
            key_id=None,
            model="m",
            inputs=1,
            prompt_tokens=1,
            status=200,
            latency_ms=1.0,
        )
    )
    other = UsageRecorder(accounts.store, 60, 10_000, UsageJournal(tmp_path / "j"))
    assert await other.replay() == 0
    await live.flush()
    async with accounts.store.engine.connect() as connection:
        assert (
            await connection.execute(select(func.count()).select_from(usage_events))
        ).scalar() == 1
        assert (await connection.execute(select(func.count()).select_from(holds))).scalar() == 0
