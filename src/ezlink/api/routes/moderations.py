"""POST /v1/moderations: free by default (a usage row with no tokens or units)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.api.auth import Principal, require_principal
from ezlink.api.metered import MeteredCall
from ezlink.api.protocol.moderations import parse_moderation, render_moderation
from ezlink.engine.media_types import MediaReply, Moderator
from ezlink.engine.types import MODERATION

router = APIRouter()


@router.post("/v1/moderations")
async def create_moderation(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    async with MeteredCall(request, principal, MODERATION) as call:
        limits = call.state.settings.server.limits
        name, parsed = parse_moderation(await call.json_body(), limits.max_inputs)
        call.counted(len(parsed.texts))
        model = cast(Moderator, call.pick(name))
        await call.admit()
        results = await call.run(model.moderate_request(parsed))
        call.succeeded()
    if isinstance(results, MediaReply):
        return Response(results.content, media_type=results.media_type, headers=call.headers)
    return Response(
        render_moderation(name, results, parsed),
        media_type="application/json",
        headers=call.headers,
    )
