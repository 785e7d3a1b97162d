"""create_app(settings): wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ezlink import __version__
from ezlink.accounts.service import Accounts
from ezlink.api.auth import Authenticator
from ezlink.api.errors import install_error_handlers
from ezlink.api.key_auth import AccountsAuthenticator
from ezlink.api.edge import RequestContextMiddleware
from ezlink.api.access_log import AccessMiddleware
from ezlink.api.routes import admin, embeddings, health, models, upstreams
from ezlink.config import LocalModelConfig, Settings
from ezlink.upstreams.endpoint import build_endpoints
from ezlink.engine.local_model import LocalModel
from ezlink.engine.registry import ModelRegistry
from ezlink.upstreams.routing import RoutedModel
from ezlink.engine.types import ServedModel
from ezlink.ops.loading import ModelLoader
from ezlink.ops.metrics import Metrics
from ezlink.ops.readiness import ReadinessCheck


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
        else RoutedModel(config, endpoints, local, limits=settings.server.limits)
        for config in settings.models
    ]


def create_app(settings: Settings, registry: ModelRegistry | None = None) -> FastAPI:
    registry = registry or ModelRegistry(build_models(settings))
    metrics = Metrics(registry)
    # Models load in the background so that the server listens at once and
    # /ready (and /v1/embeddings, with 503) say so until they are loaded.
    loader = ModelLoader(registry, on_loaded=lambda: metrics.attach_to_engine(registry))
    # Keys, limits and usage; connects (and migrates) in the lifespan.
    accounts = Accounts.from_config(settings.accounts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await accounts.start()
        loader.start()
        try:
            yield
        finally:
            try:
                await loader.stop()
            finally:
                # After the in-flight requests: writes the usage still pending.
                await accounts.stop()

    app = FastAPI(
        title="ezlink",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.loader = loader
    # name → async check that raises when a dependency is unreachable (see ops.readiness).
    readiness_checks: dict[str, ReadinessCheck] = {}
    app.state.readiness_checks = readiness_checks
    app.state.accounts = accounts
    readiness_checks.update(accounts.readiness_checks())
    authenticator: Authenticator = AccountsAuthenticator(settings.server.master_key, accounts)
    app.state.authenticator = authenticator
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.server.limits.max_body_bytes
    )
    # Added last, so outermost: it sees the final status of every request.
    app.add_middleware(AccessMiddleware, metrics=metrics)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(upstreams.router)
    app.include_router(admin.router)
    return app
