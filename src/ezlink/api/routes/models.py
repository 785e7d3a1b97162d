"""GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ezlink.api.auth import Principal, require_principal
from ezlink.api.state import app_state
from ezlink.engine.registry import ModelRegistry
from ezlink.errors import ModelNotFoundError

router = APIRouter()


def model_object(name: str, registry: ModelRegistry) -> dict[str, Any]:
    card = registry.card_of(name)
    return {"id": name, "object": "model", "created": card.created, "owned_by": card.owned_by}


@router.get("/v1/models")
async def list_models(
    request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    registry = app_state(request).registry
    names = [name for name in registry.names() if principal.may_use(name)]
    return {"object": "list", "data": [model_object(name, registry) for name in names]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(
    model_id: str, request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    if not principal.may_use(model_id):
        raise ModelNotFoundError(model_id)
    return model_object(model_id, app_state(request).registry)
