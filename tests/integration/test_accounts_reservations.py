"""Token quotas and TPM cannot be overshot by concurrent requests: each
reserves its bound before it runs and settles to its real count (in process,
a deterministic echo model behind the chat route)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import AccountsConfig, ServerConfig, Settings
from ezlink.engine.registry import ModelRegistry
from tests.support.fake_generator import EchoGenerator

MASTER_KEY = "sk-reservations-master-0123456789"
BODY = {
    "model": "echo",
    "messages": [{"role": "user", "content": "one two three four five six"}],
    "max_tokens": 4,
}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings(
        server=ServerConfig(master_key=MASTER_KEY),
        accounts=AccountsConfig(database_url=f"sqlite:///{tmp_path}/ezlink.db"),
    )
    application = create_app(settings, registry=ModelRegistry([EchoGenerator()]))
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


async def concurrent_chats(
    app: FastAPI, limits: dict[str, Any], count: int
) -> tuple[str, list[httpx.Response]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as http:
        created = await http.post(
            "/admin/keys",
            json={"name": "limited", **limits},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
        )
        key = created.json()
        headers = {"Authorization": f"Bearer {key['key']}"}
        responses = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=BODY, headers=headers) for _ in range(count))
        )
    return key["id"], list(responses)


def tokens_of(response: httpx.Response) -> int:
    usage = response.json()["usage"]
    return int(usage["prompt_tokens"] + usage["completion_tokens"])


async def test_a_quota_of_200_under_50_concurrent_requests_ends_at_most_one_request_above(
    app: FastAPI,
) -> None:
    key_id, responses = await concurrent_chats(app, {"quota_tokens": 200}, 50)
    answered = [r for r in responses if r.status_code == 200]
    assert {r.status_code for r in responses} <= {200, 429}
    per_request = tokens_of(answered[0])  # 6 prompt + 4 completion
    key = await state_of(app).accounts.store.get_key(key_id)
    assert key is not None
    assert key.limits.used_tokens == sum(tokens_of(r) for r in answered)
    assert key.limits.used_tokens <= 200 + per_request


async def test_tpm_50_under_20_concurrent_requests_lets_through_only_what_it_holds(
    app: FastAPI,
) -> None:
    _, responses = await concurrent_chats(app, {"tpm": 50}, 20)
    answered = [r for r in responses if r.status_code == 200]
    assert answered and len(answered) < 20
    # Each reserves its bound (prompt bytes / 4 + max_tokens): the bucket
    # never grants more than it holds (plus the one that may find it full).
    assert sum(tokens_of(r) for r in answered) <= 50 + tokens_of(answered[0])
