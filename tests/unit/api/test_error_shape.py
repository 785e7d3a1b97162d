"""Every route's errors have OpenAI's shape (as datasette's test_error_shape.py does).

The routes are read from the app itself, so a family added later is checked
without touching this file: no key (401), the wrong method (405), a body that
is not JSON (400), a body over the limit (413), an unknown route (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import AccountsConfig, RequestLimitsConfig, ServerConfig, Settings
from ezlink.engine.registry import ModelRegistry
from tests.support.openai_errors import assert_openai_error
from tests.support.stub_models import IdleEmbedder

MASTER_KEY = "sk-shape-master-0123456789"
PUBLIC_PATHS = {"/health", "/ready", "/metrics"}
MAX_BODY = 4096


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings(
        server=ServerConfig(
            master_key=MASTER_KEY, limits=RequestLimitsConfig(max_body_bytes=MAX_BODY)
        ),
        accounts=AccountsConfig(database_url=f"sqlite:///{tmp_path}/ezlink.db"),
    )
    application = create_app(settings, registry=ModelRegistry([IdleEmbedder()]))
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves."""
    routes = []
    for route in app.router.routes:
        # Included routers are kept whole (FastAPI >= 0.16x); their routes are inside.
        inner = getattr(route, "original_router", None)
        for api_route in inner.routes if inner is not None else [route]:
            if isinstance(api_route, APIRoute):
                path = api_route.path
                path = path.replace("{model_id:path}", "idle").replace("{key_id}", "nokey")
                routes += [(method, path) for method in sorted(api_route.methods)]
    return routes


async def send(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


async def test_the_app_serves_routes_to_check(app: FastAPI) -> None:
    assert ("POST", "/v1/embeddings") in api_routes(app)


async def test_every_keyed_route_without_a_key_is_401(app: FastAPI) -> None:
    for method, path in api_routes(app):
        if path in PUBLIC_PATHS:
            continue
        response = await send(app, method, path)
        assert_openai_error(response, 401, code="invalid_api_key")


async def test_every_route_with_the_wrong_method_is_405(app: FastAPI) -> None:
    served = set(api_routes(app))
    for _, path in served:
        wrong = "PUT" if ("PUT", path) not in served else "PATCH"
        response = await send(app, wrong, path, headers=AUTH)
        assert_openai_error(response, 405)


async def test_every_post_route_refuses_a_body_that_is_not_json(app: FastAPI) -> None:
    for method, path in api_routes(app):
        if method != "POST":
            continue
        response = await send(app, method, path, headers=AUTH, content=b"{not json")
        # A route about an object that does not exist may say so first.
        assert_openai_error(response, 404 if "nokey" in path else 400)


async def test_every_post_route_refuses_a_body_over_the_limit(app: FastAPI) -> None:
    for method, path in api_routes(app):
        if method != "POST":
            continue
        response = await send(app, method, path, headers=AUTH, content=b"x" * (MAX_BODY + 1))
        assert_openai_error(response, 413)


async def test_an_unknown_route_is_404(app: FastAPI) -> None:
    response = await send(app, "GET", "/v1/nothing-here", headers=AUTH)
    assert_openai_error(response, 404)
