"""An open server (no master key, no key issued) closes once a key is issued."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ezlink.accounts import service
from ezlink.accounts.service import Accounts
from ezlink.config import AccountsConfig


async def test_the_first_issued_key_is_seen_within_the_recheck_interval(tmp_path: Path) -> None:
    accounts = Accounts.from_config(AccountsConfig(database_url=f"sqlite:///{tmp_path}/a.db"))
    await accounts.start()
    try:
        assert await accounts.any_keys() is False
        # Issued elsewhere (the CLI, another replica): this process has not asked yet.
        await accounts.store.create_key("first")
        assert await accounts.any_keys() is False, "a 'no' is trusted for the interval"
        await asyncio.sleep(service.NO_KEYS_RECHECK_S + 0.1)
        assert await accounts.any_keys() is True
    finally:
        await accounts.stop()


async def test_requests_arriving_together_ask_the_database_once(tmp_path: Path) -> None:
    accounts = Accounts.from_config(AccountsConfig(database_url=f"sqlite:///{tmp_path}/a.db"))
    await accounts.start()
    asked = 0
    any_keys = accounts.store.any_keys

    async def counting_any_keys() -> bool:
        nonlocal asked
        asked += 1
        return await any_keys()

    accounts.store.any_keys = counting_any_keys  # type: ignore[method-assign]
    try:
        answers = await asyncio.gather(*(accounts.any_keys() for _ in range(50)))
        assert answers == [False] * 50
        assert asked == 1
    finally:
        await accounts.stop()
