"""The last resort: an unexpected failure is a generic 500 in the OpenAI shape.

No real model fails on demand, so a model that raises stands in for one; the
app, its middleware and its lifespan are the real ones (in process).
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import AccountsConfig, Settings
from ezlink.engine.registry import ModelRegistry
from ezlink.engine.types import EmbedRequest, EmbedResult
from tests.support.openai_errors import assert_openai_error
from tests.support.stub_models import StubModel

SECRET_DETAIL = "connection string postgres://admin:hunter2@db"


class BrokenModel(StubModel):
    """A served model whose every call fails in a way nobody planned for."""

    def __init__(self) -> None:
        super().__init__("broken")

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        raise RuntimeError(SECRET_DETAIL)


async def test_an_unexpected_error_is_a_generic_500_naming_the_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(accounts=AccountsConfig(database_url=f"sqlite:///{tmp_path}/ezlink.db"))
    app = create_app(settings, registry=ModelRegistry([BrokenModel()]))
    async with app.router.lifespan_context(app):
        await state_of(app).loader.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as client:
            response = await client.post(
                "/v1/embeddings",
                json={"model": "broken", "input": "hello"},
                headers={"X-Request-ID": "req-test-42"},
            )
    error = assert_openai_error(response, 500, code="internal_error")
    assert error["type"] == "server_error"
    assert "req-test-42" in error["message"]
    assert response.headers["x-request-id"] == "req-test-42"
    assert SECRET_DETAIL not in response.text
    # The details go to the log, with the request id, for the operator.
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("req-test-42" in r.getMessage() for r in logged)
