"""Probes on an app whose models have not loaded (no lifespan has run), and readiness logic."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import ServerConfig, Settings
from ezlink.ops import readiness
from ezlink.ops.readiness import assess

MASTER_KEY = "sk-unit-master-0123456789"


def not_loaded_app(**server: object) -> FastAPI:
    return create_app(Settings(server=ServerConfig(master_key=MASTER_KEY, **server)))


async def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    finally:
        # No lifespan ran, so close the accounts database here, on this loop.
        await state_of(app).accounts.store.engine.dispose()


async def test_health_is_ok_while_models_load() -> None:
    response = await call(not_loaded_app(), "GET", "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_503_in_openai_shape_while_models_load() -> None:
    response = await call(not_loaded_app(), "GET", "/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "models are loading" in error["message"]
    assert response.headers["retry-after"] == "1"


async def test_embeddings_answer_503_model_loading_until_loaded() -> None:
    response = await call(
        not_loaded_app(),
        "POST",
        "/v1/embeddings",
        json={"model": "text-embedding-ada-002", "input": "hello"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_loading"
    assert "retry-after" in response.headers


async def test_metrics_are_open_by_default() -> None:
    response = await call(not_loaded_app(), "GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "ezlink_ready 0.0" in response.text


async def test_metrics_ask_for_the_master_key_when_configured() -> None:
    app = not_loaded_app(metrics_require_key=True)
    assert (await call(app, "GET", "/metrics")).status_code == 401
    with_key = await call(app, "GET", "/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert with_key.status_code == 200


async def test_two_apps_keep_separate_metrics() -> None:
    first, second = not_loaded_app(), not_loaded_app()
    await call(first, "GET", "/health")
    scraped = (await call(second, "GET", "/metrics")).text
    assert 'route="/health"' not in scraped


async def _fine() -> None:
    return None


async def _unreachable() -> None:
    raise ConnectionRefusedError("connect to db-host:5432 failed")


async def _hangs() -> None:
    await asyncio.sleep(60)


async def test_ready_needs_loaded_models_and_every_check_passing() -> None:
    assert (await assess(True, {"database": _fine})).ready
    assert not (await assess(False, {"database": _fine})).ready
    failed = await assess(True, {"database": _unreachable})
    assert not failed.ready
    # The reason names the dependency and the error's kind, not its message (hosts, URLs).
    assert failed.problems() == ["database: unreachable (ConnectionRefusedError)"]


async def test_a_hanging_check_counts_as_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "CHECK_TIMEOUT_S", 0.05)
    result = await assess(True, {"redis": _hangs})
    assert not result.ready
    assert result.checks["redis"].startswith("no answer")
