"""GET /admin/upstreams: each upstream's health (master key only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request

from ezlink.api.auth import Principal, require_admin
from ezlink.api.state import app_state
from ezlink.upstreams.routing import upstream_snapshots

router = APIRouter()


@router.get("/admin/upstreams")
async def list_upstreams(
    request: Request, principal: Principal = Depends(require_admin)
) -> dict[str, Any]:
    registry = app_state(request).registry
    return {
        "object": "list",
        "data": [asdict(snapshot) for snapshot in upstream_snapshots(registry.models)],
    }
