"""When the accounts database or Redis is down: 503 for auth, fail open for limits."""

from __future__ import annotations

import pytest

from ezlink.accounts.keys import KeyLimits
from ezlink.accounts.ratelimit import RedisLimiter
from ezlink.accounts.service import Accounts, bucket_takes
from ezlink.config import AccountsConfig
from ezlink.errors import OverloadedError
from tests.support.server import free_port


async def test_an_unreachable_database_answers_503_not_500() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    accounts = Accounts.from_config(AccountsConfig(database_url=url))
    try:
        with pytest.raises(OverloadedError) as refused:
            await accounts.find_key("sk-anything")
        assert refused.value.status_code == 503
        assert refused.value.headers["Retry-After"] == "1"
        with pytest.raises(OverloadedError):
            await accounts.any_keys()
    finally:
        await accounts.stop()


async def test_an_unreachable_redis_lets_requests_through() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        decision = await limiter.take(bucket_takes("k", KeyLimits(rpm=1), None))
        assert decision.allowed
    finally:
        await limiter.close()
