"""Rate limits shared through a real Redis server: they hold across processes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ezlink.accounts.keys import KeyLimits
from ezlink.accounts.ratelimit import RedisLimiter, Take
from ezlink.accounts.service import bucket_takes
from tests.support.openai_errors import assert_openai_error
from tests.support.redis import RedisServer
from tests.support.server import ServerProcess
from tests.support.server_group import start_servers, stop_servers

MASTER = "sk-redis-master-0123456789abcdef"
MODEL = "text-embedding-3-small"


async def test_two_limiters_on_one_redis_share_a_key_bucket(redis_server: RedisServer) -> None:
    first, second = RedisLimiter(redis_server.url), RedisLimiter(redis_server.url)
    try:
        limits = KeyLimits(rpm=5)
        allowed = [
            (await limiter.take(bucket_takes("shared", limits, None))).allowed
            for limiter in [first, second] * 5
        ]
        assert allowed == [True] * 5 + [False] * 5
        refused = await first.take(bucket_takes("shared", limits, None))
        assert 0 < refused.retry_after_s <= 12  # one request refills in 60/5 s
    finally:
        await first.close()
        await second.close()


async def test_a_refused_take_charges_no_bucket_in_redis(redis_server: RedisServer) -> None:
    limiter = RedisLimiter(redis_server.url)
    try:
        takes = [Take("r-a", 10, cost=1, need=1), Take("r-b", 10, cost=0, need=11)]
        assert not (await limiter.take(takes)).allowed
        after = await limiter.take([Take("r-a", 10, cost=1, need=1)])
        assert after.allowed and after.states[0].remaining == pytest.approx(9, abs=0.01)
    finally:
        await limiter.close()


@pytest.fixture(scope="module")
def shared_servers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    database = f"sqlite:///{tmp_path_factory.mktemp('redis-accounts') / 'ezlink.db'}"
    env = {"EZLINK_DATABASE_URL": database, "EZLINK_REDIS_URL": redis_server.url}
    servers = start_servers(2, MASTER, env)
    try:
        yield servers
    finally:
        stop_servers(servers)


def embed(server: ServerProcess, secret: str) -> httpx.Response:
    return httpx.post(
        server.api_url + "/embeddings",
        json={"model": MODEL, "input": "hi"},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


def test_request_rate_holds_across_two_server_processes(
    shared_servers: list[ServerProcess],
) -> None:
    a, b = shared_servers
    created = httpx.post(
        a.base_url + "/admin/keys", json={"name": "shared", "rpm": 4}, headers=a.headers()
    ).json()
    responses = [embed(server, created["key"]) for server in [a, b] * 4]
    assert [r.status_code for r in responses] == [200] * 4 + [429] * 4
    remaining = [r.headers["x-ratelimit-remaining-requests"] for r in responses[:4]]
    assert remaining == ["3", "2", "1", "0"]
    for refused in responses[4:]:
        assert_openai_error(refused, 429, code="rate_limit_exceeded")
        assert int(refused.headers["retry-after"]) >= 1


def test_token_rate_holds_across_two_server_processes(
    shared_servers: list[ServerProcess],
) -> None:
    a, b = shared_servers
    created = httpx.post(
        a.base_url + "/admin/keys", json={"name": "tokens", "tpm": 5}, headers=a.headers()
    ).json()
    # "hi" is 3 tokens with the model's special tokens; a request reserves its
    # size bound (2 bytes + 2 special tokens = 4) before it runs and settles to
    # the real count, so the first leaves 5 - 3 = 2 in the shared bucket: too
    # little for the second, on the other process (it would have overshot).
    responses = [embed(server, created["key"]) for server in (a, b, a)]
    assert responses[0].json()["usage"]["prompt_tokens"] == 3
    assert responses[0].headers["x-ratelimit-remaining-tokens"] == "2"
    for refused in responses[1:]:
        assert_openai_error(refused, 429, code="rate_limit_exceeded")
