"""POST /v1/embeddings."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.billing import Bound
from ezlink.accounts.service import TokenCounts
from ezlink.api.auth import Principal, require_principal
from ezlink.api.metered import MeteredCall
from ezlink.api.protocol.embeddings import (
    embeddings_token_bound,
    parse_embeddings_fields,
    render_embeddings,
)
from ezlink.engine.types import EMBEDDINGS, Embedder

router = APIRouter()


@router.post("/v1/embeddings")
async def create_embeddings(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    async with MeteredCall(request, principal, EMBEDDINGS) as call:
        parsed = parse_embeddings_fields(
            await call.json_body(), call.state.settings.server.limits
        )
        call.counted(parsed.request.count)
        model = cast(Embedder, call.pick(parsed.model))
        bound = Bound(prompt_tokens=embeddings_token_bound(call.body))
        await call.admit(user=parsed.request.user, bound=bound)
        result = await call.run(model.embed(parsed.request))
        call.succeeded(TokenCounts(prompt=result.prompt_tokens))
    return Response(
        render_embeddings(parsed.model, result, parsed.encoding_format),
        media_type="application/json",
        headers=call.headers,
    )
