"""POST /v1/embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.service import Accounts
from ezlink.api.auth import Principal, require_principal
from ezlink.api.protocol import parse_embeddings_call, render_embeddings
from ezlink.engine.local_model import LocalModel
from ezlink.engine.registry import ModelRegistry
from ezlink.errors import ModelNotFoundError, OverloadedError

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


@router.post("/v1/embeddings")
async def create_embeddings(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    registry: ModelRegistry = request.app.state.registry
    call = parse_embeddings_call(await request.body(), request.app.state.settings.server.limits)
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
    # Quota and rate limits (429 past them); usage is recorded however it ends.
    accounts: Accounts = request.app.state.accounts
    meter = await accounts.admit(
        key_id=principal.key_id,
        limits=principal.limits,
        model=call.model,
        inputs=call.request.count,
        user=call.request.user,
        request_id=getattr(request.state, "request_id", None),
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
