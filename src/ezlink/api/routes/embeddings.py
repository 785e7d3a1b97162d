"""POST /v1/embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.api.auth import Principal, require_principal
from ezlink.api.protocol import parse_embeddings_call, render_embeddings
from ezlink.engine.registry import ModelRegistry
from ezlink.errors import ModelNotFoundError

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
    try:
        result = await unless_disconnected(request, model.embed(call.request))
    except ClientDisconnected:
        # Nobody is listening; 499 is what proxies log for this.
        return Response(status_code=499)
    return Response(
        render_embeddings(call.model, result, call.encoding_format),
        media_type="application/json",
    )
