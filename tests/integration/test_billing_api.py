"""Credits over HTTP, in process: teams and keys through the admin API, a
priced chat model, 429 insufficient_quota before any model call, the
dashboard endpoints chat front-ends read, redemption codes, usage with cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import AccountsConfig, GgufModelConfig, PriceConfig, ServerConfig, Settings
from ezlink.engine.registry import ModelRegistry
from tests.support.fake_generator import EchoGenerator
from tests.support.openai_errors import assert_openai_error

MASTER_KEY = "sk-billing-master-0123456789"
MESSAGES = [
    {"role": "system", "content": "You echo."},
    {"role": "user", "content": "the quick brown fox"},
]
# Micro-units per token: prompt 1, completion 2.
PRICE = PriceConfig(input_per_1m="1", output_per_1m="2")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings(
        server=ServerConfig(master_key=MASTER_KEY),
        accounts=AccountsConfig(database_url=f"sqlite:///{tmp_path}/ezlink.db"),
        models=[GgufModelConfig(kind="gguf", id="echo", package="unused", price=PRICE)],
    )
    application = create_app(settings, registry=ModelRegistry([EchoGenerator()]))
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


async def request(
    app: FastAPI, method: str, path: str, key: str = MASTER_KEY, **kwargs: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as http:
        return await http.request(
            method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs
        )


async def team_key(app: FastAPI, team: str, balance: str, **key: Any) -> str:
    created = await request(app, "POST", "/admin/teams", json={"name": team, "balance": balance})
    assert created.status_code == 201, created.text
    assert created.json()["balance"] == balance
    issued = await request(app, "POST", "/admin/keys", json={"name": "k", "team": team, **key})
    assert issued.status_code == 201, issued.text
    secret: str = issued.json()["key"]
    return secret


def chat(max_tokens: int = 10) -> dict[str, Any]:
    return {"json": {"model": "echo", "messages": MESSAGES, "max_tokens": max_tokens}}


async def test_a_chat_is_charged_its_exact_price_and_shown_everywhere(app: FastAPI) -> None:
    secret = await team_key(app, "acme", "0.01")
    answered = await request(app, "POST", "/v1/chat/completions", secret, **chat())
    assert answered.status_code == 200, answered.text
    usage = answered.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (6, 4)
    # 6 x 1 + 4 x 2 = 14 micro-units.
    team = (await request(app, "GET", "/admin/teams/acme")).json()
    assert team["balance"] == "0.009986" and team["held"] == "0.00"
    assert team["spent_today"] == "0.000014"
    subscription = await request(app, "GET", "/v1/dashboard/billing/subscription", secret)
    assert subscription.json()["object"] == "billing_subscription"
    assert subscription.json()["hard_limit_usd"] == 0.01
    spent = await request(app, "GET", "/v1/dashboard/billing/usage", secret)
    assert spent.json() == {"object": "list", "total_usage": 0.0014}
    by_team = await request(app, "GET", "/admin/usage", params={"group_by": "team"})
    (row,) = by_team.json()["data"]
    assert row["cost"] == "0.000014" and row["requests"] == 1
    csv = await request(app, "GET", "/admin/usage", params={"group_by": "model", "format": "csv"})
    assert csv.text.splitlines()[1].startswith("echo,1,") and csv.text.strip().endswith("0.000014")
    assert (await request(app, "GET", "/admin/ledger/verify")).json() == {
        "ok": True,
        "differences": [],
    }


async def test_a_request_the_team_cannot_cover_never_reaches_the_model(app: FastAPI) -> None:
    secret = await team_key(app, "broke", "0.00001")
    generator = state_of(app).registry.get("echo", "chat")
    assert isinstance(generator, EchoGenerator)
    before = len(generator.generations)
    refused = await request(app, "POST", "/v1/chat/completions", secret, **chat())
    assert_openai_error(refused, 429, code="insufficient_quota")
    assert refused.headers["x-should-retry"] == "false"
    assert len(generator.generations) == before
    team = (await request(app, "GET", "/admin/teams/broke")).json()
    assert team["balance"] == "0.00001" and team["held"] == "0.00"


async def test_a_redemption_code_adds_to_the_team_once(app: FastAPI) -> None:
    secret = await team_key(app, "r", "0.00")
    made = await request(app, "POST", "/admin/codes", json={"value": "10.00", "count": 2})
    codes = made.json()["data"]
    redeemed = await request(app, "POST", "/v1/ezlink/redeem", secret, json={"code": codes[0]})
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["balance"] == "10.00"
    again = await request(app, "POST", "/v1/ezlink/redeem", secret, json={"code": codes[0]})
    assert_openai_error(again, 400, code="invalid_code")
    ledger = (await request(app, "GET", "/admin/teams/r/ledger")).json()["data"]
    assert [(row["kind"], row["amount"]) for row in ledger] == [("redeem", "10.00")]


async def test_a_key_without_a_team_works_unbilled(app: FastAPI) -> None:
    issued = await request(app, "POST", "/admin/keys", json={"name": "plain"})
    secret = issued.json()["key"]
    answered = await request(app, "POST", "/v1/chat/completions", secret, **chat())
    assert answered.status_code == 200
    missing = await request(app, "GET", "/v1/dashboard/billing/subscription", secret)
    assert_openai_error(missing, 404)


async def test_money_fields_refuse_floats_rounding_and_negatives(app: FastAPI) -> None:
    bad = await request(app, "POST", "/admin/teams", json={"name": "x", "balance": "0.0000001"})
    assert_openai_error(bad, 400, param="balance")
    negative = await request(app, "POST", "/admin/teams", json={"name": "x", "balance": "-1"})
    assert_openai_error(negative, 400, param="balance")
