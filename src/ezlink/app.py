"""create_app(settings): wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ezlink import __version__
from ezlink.api.auth import Authenticator, MasterKeyAuthenticator
from ezlink.api.errors import install_error_handlers
from ezlink.api.middleware import RequestContextMiddleware
from ezlink.api.routes import embeddings, models, upstreams
from ezlink.config import LocalModelConfig, Settings
from ezlink.engine.local_model import LocalModel
from ezlink.engine.registry import ModelRegistry
from ezlink.engine.routing import RoutedModel, build_endpoints
from ezlink.engine.types import ServedModel


def build_models(settings: Settings) -> list[ServedModel]:
    local = {
        config.id: LocalModel(config, settings.server.limits)
        for config in settings.models
        if isinstance(config, LocalModelConfig)
    }
    endpoints = build_endpoints(settings.upstreams)
    return [
        local[config.id]
        if isinstance(config, LocalModelConfig)
        else RoutedModel(config, endpoints, local)
        for config in settings.models
    ]


def create_app(
    settings: Settings,
    registry: ModelRegistry | None = None,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    registry = registry or ModelRegistry(build_models(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            await registry.stop()

    app = FastAPI(
        title="ezlink",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.authenticator = authenticator or MasterKeyAuthenticator(settings.server.master_key)
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.server.limits.max_body_bytes
    )
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(upstreams.router)
    return app
