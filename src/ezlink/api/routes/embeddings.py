"""POST /v1/embeddings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.service import Accounts
from ezlink.api.auth import Principal, require_principal
from ezlink.api.protocol.embeddings import (
    EmbeddingsCall,
    parse_embeddings_fields,
    parse_json_object,
    render_embeddings,
)
from ezlink.engine.local_model import LocalModel
from ezlink.engine.registry import ModelRegistry
from ezlink.engine.types import ServedModel
from ezlink.errors import EzlinkError, ModelNotFoundError, OverloadedError

router = APIRouter()
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before its answer was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so dropping its queued inputs) if the client leaves."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise ClientDisconnected
    return task.result()


def _text_field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def _admissible_model(request: Request, principal: Principal, call: EmbeddingsCall) -> ServedModel:
    """The model that will answer `call`, or the refusal: 404 (unknown or not
    allowed for this key), 503 (still loading, or its queue is full)."""
    registry: ModelRegistry = request.app.state.registry
    if not principal.may_use(call.model):
        raise ModelNotFoundError(call.model)
    model = registry.get(call.model)
    # Read by the access log and metrics (api.observe) once the response is sent.
    request.state.model = call.model
    request.state.inputs = call.request.count
    if not registry.ready:
        raise OverloadedError(
            "The model is still loading; retry shortly.",
            code="model_loading",
            headers={"Retry-After": "1"},
        )
    if isinstance(model, LocalModel):
        # Shed load before any accounting: under a burst a refused request
        # must cost next to nothing (no database round trips) to come at once.
        model.check_room()
    return model


@router.post("/v1/embeddings")
async def create_embeddings(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    started = time.perf_counter()
    accounts: Accounts = request.app.state.accounts
    request_id = getattr(request.state, "request_id", None)
    body = await request.body()
    data: dict[str, Any] = {}
    call: EmbeddingsCall | None = None
    try:
        data = parse_json_object(body)
        call = parse_embeddings_fields(data, request.app.state.settings.server.limits)
        model = _admissible_model(request, principal, call)
    except EzlinkError as refusal:
        # Refused before admission: still the key's usage (with no tokens),
        # so operators reading usage see its 400s, 404s and 503s.
        accounts.record_refusal(
            key_id=principal.key_id,
            model=_text_field(data, "model") or "",
            inputs=call.request.count if call is not None else 0,
            error=refusal,
            started=started,
            user=_text_field(data, "user"),
            request_id=request_id,
        )
        raise
    # Quota and rate limits (429 past them); usage is recorded however it ends.
    meter = await accounts.admit(
        key_id=principal.key_id,
        limits=principal.limits,
        model=call.model,
        inputs=call.request.count,
        user=call.request.user,
        request_id=request_id,
    )
    try:
        result = await unless_disconnected(request, model.embed(call.request))
    except ClientDisconnected:
        await accounts.settle(meter)
        # Nobody is listening; 499 is what proxies log for this.
        return Response(status_code=499)
    except Exception as exc:
        await accounts.settle(meter, error=exc)
        raise
    request.state.tokens = result.prompt_tokens
    await accounts.settle(meter, tokens=result.prompt_tokens)
    return Response(
        render_embeddings(call.model, result, call.encoding_format),
        media_type="application/json",
        headers=meter.headers,
    )
