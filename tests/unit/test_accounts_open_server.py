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
