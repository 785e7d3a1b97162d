"""create_app(settings): wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ezlink import __version__
from ezlink.accounts.service import Accounts
from ezlink.api.access_log import AccessMiddleware
from ezlink.api.auth import Authenticator
from ezlink.api.edge import RequestContextMiddleware
from ezlink.api.errors import install_error_handlers
from ezlink.api.routes import (
    admin,
    audio,
    billing,
    chat,
    embeddings,
    health,
    images,
    models,
    moderations,
    upstreams,
)
from ezlink.api.state import AppState
from ezlink.catalog import build_models
from ezlink.config import Settings
from ezlink.engine.registry import ModelRegistry
from ezlink.ops.loading import ModelLoader
from ezlink.ops.metrics import Metrics


def create_app(settings: Settings, registry: ModelRegistry | None = None) -> FastAPI:
    registry = registry or ModelRegistry(build_models(settings))
    metrics = Metrics(registry)
    # Models load in the background so that the server listens at once and
    # /ready (and /v1/embeddings, with 503) say so until they are loaded.
    loader = ModelLoader(registry, on_loaded=lambda: metrics.attach_to_engine(registry))
    # Keys, limits and usage; connects (and migrates) in the lifespan.
    accounts = Accounts.from_config(settings.accounts)
    # Prices and billing rules, read once: a price change needs a restart (or
    # a new process), so requests admitted before it keep their price.
    accounts.credits.configure(settings.billing, settings.models)

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
    app.state.ezlink = AppState(
        settings=settings,
        registry=registry,
        metrics=metrics,
        loader=loader,
        accounts=accounts,
        authenticator=Authenticator(settings.server.master_key, accounts),
        readiness_checks=dict(accounts.readiness_checks()),
    )
    install_error_handlers(app)
    limits = settings.server.limits
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=limits.max_body_bytes,
        # Multipart uploads (audio files, images) may be larger.
        upload_limits=dict.fromkeys(
            (*audio.UPLOAD_PATHS, *images.UPLOAD_PATHS), limits.max_upload_bytes
        ),
    )
    # Added last, so outermost: it sees the final status of every request.
    app.add_middleware(AccessMiddleware, metrics=metrics)
    # The route table: one module per family (api/routes/).
    app.include_router(embeddings.router)  # POST /v1/embeddings
    app.include_router(chat.router)  # POST /v1/chat/completions, /v1/completions
    app.include_router(audio.router)  # POST /v1/audio/speech, /transcriptions, /translations
    app.include_router(images.router)  # POST /v1/images/generations, /edits, /variations
    app.include_router(moderations.router)  # POST /v1/moderations
    app.include_router(models.router)  # GET /v1/models, /v1/models/{id}
    app.include_router(health.router)  # GET /health, /ready, /metrics
    app.include_router(upstreams.router)  # GET /admin/upstreams
    app.include_router(admin.router)  # /admin/keys, /admin/usage
    app.include_router(billing.router)  # /v1/dashboard/billing/*, POST /v1/ezlink/redeem
    return app
