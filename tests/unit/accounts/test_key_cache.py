"""accounts.key_cache_seconds: off by default; when on, bounded staleness, exact quotas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ezlink.accounts.service import Accounts
from ezlink.config import AccountsConfig


async def open_accounts(tmp_path: Path, key_cache_seconds: float) -> Accounts:
    config = AccountsConfig(
        database_url=f"sqlite:///{tmp_path}/a.db", key_cache_seconds=key_cache_seconds
    )
    accounts = Accounts.from_config(config)
    await accounts.start()
    return accounts


async def state_of(accounts: Accounts, secret: str) -> str:
    key = await accounts.find_key(secret)
    assert key is not None
    return key.state()


@pytest.fixture
async def uncached(tmp_path: Path) -> AsyncIterator[Accounts]:
    accounts = await open_accounts(tmp_path, 0)
    yield accounts
    await accounts.stop()


@pytest.fixture
async def cached(tmp_path: Path) -> AsyncIterator[Accounts]:
    accounts = await open_accounts(tmp_path, 1.0)
    yield accounts
    await accounts.stop()


async def test_by_default_a_change_made_elsewhere_holds_from_the_next_request(
    uncached: Accounts,
) -> None:
    key, secret = await uncached.store.create_key("k")
    assert await state_of(uncached, secret) == "active"
    await uncached.store.revoke_key(key.id)  # as the CLI or another replica would
    assert await state_of(uncached, secret) == "revoked"


async def test_a_cached_read_serves_until_it_ages(cached: Accounts) -> None:
    key, secret = await cached.store.create_key("k")
    assert await state_of(cached, secret) == "active"
    await cached.store.update_key(key.id, {"disabled": True})
    assert await state_of(cached, secret) == "active"
    await asyncio.sleep(1.05)
    assert await state_of(cached, secret) == "disabled"


async def test_a_change_made_in_this_process_clears_the_cache(cached: Accounts) -> None:
    key, secret = await cached.store.create_key("k")
    await cached.find_key(secret)
    await cached.store.revoke_key(key.id)
    cached.forget_cached_keys()  # what the admin API does after every change
    assert await state_of(cached, secret) == "revoked"


async def test_a_key_with_a_quota_is_always_read_fresh(cached: Accounts) -> None:
    key, secret = await cached.store.create_key("k", quota_tokens=100)
    await cached.find_key(secret)
    await cached.store.charge(key.id, 60)
    found = await cached.find_key(secret)
    assert found is not None and found.limits.used_tokens == 60


async def test_unknown_secrets_are_not_cached(cached: Accounts) -> None:
    assert await cached.find_key("sk-nobody") is None
    assert await cached.find_key("sk-nobody") is None
