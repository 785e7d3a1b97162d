"""Probes and scrapes: GET /health, GET /ready, GET /metrics (no /v1 key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ezlink.api.auth import require_admin
from ezlink.api.state import app_state
from ezlink.errors import OverloadedError
from ezlink.ops.metrics import CONTENT_TYPE
from ezlink.ops.readiness import assess

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, Any]:
    """Alive: answers 200 for as long as the process serves HTTP."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> dict[str, Any]:
    """Ready for traffic: every model loaded and every registered dependency reachable."""
    state = app_state(request)
    readiness = await assess(state.registry.ready, state.readiness_checks)
    if not readiness.ready:
        raise OverloadedError(
            "Not ready: " + "; ".join(readiness.problems()) + ".",
            code="not_ready",
            headers={"Retry-After": "1"},
        )
    return {"status": "ready", "models": state.registry.names(), "checks": readiness.checks}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; asks for the master key when the config says so."""
    state = app_state(request)
    if state.settings.server.metrics_require_key:
        await require_admin(request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
