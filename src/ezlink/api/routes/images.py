"""POST /v1/images/generations (JSON), /v1/images/edits and /v1/images/variations
(multipart). Relayed only: no image model runs here, and none is faked.

Metered per image, by size and quality (the upstream's, where its answer
says, else the request's), and by tokens where the upstream reports them.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.billing import Bound
from ezlink.accounts.service import TokenCounts, Units
from ezlink.api.auth import Principal, require_principal
from ezlink.api.metered import MeteredCall
from ezlink.api.protocol.audio import read_multipart
from ezlink.api.protocol.images import parse_generation, parse_upload
from ezlink.engine.media_types import ImageMaker, ImageRequest
from ezlink.engine.types import IMAGES

router = APIRouter()

# The multipart routes, whose uploads may exceed server.limits.max_body_bytes.
UPLOAD_PATHS = ("/v1/images/edits", "/v1/images/variations")


async def make_images(call: MeteredCall, parsed: ImageRequest) -> Response:
    call.counted(parsed.n)
    model = cast(ImageMaker, call.pick(parsed.model))
    user = parsed.fields.get("user")
    bound = Bound(
        units=Units(images=parsed.n, image_size=parsed.size, image_quality=parsed.quality)
    )
    await call.admit(user=user if isinstance(user, str) else None, bound=bound)
    result = await call.run(model.make_images(parsed, b64=parsed.response_format == "b64_json"))
    body: dict[str, Any] = result.body
    size, quality = body.get("size"), body.get("quality")
    units = Units(
        images=len(body.get("data") or []),
        image_size=size if isinstance(size, str) else parsed.size,
        image_quality=quality if isinstance(quality, str) else parsed.quality,
    )
    call.succeeded(TokenCounts(*result.tokens) if result.tokens else None, units=units)
    return Response(orjson.dumps(body), media_type="application/json", headers=call.headers)


@router.post("/v1/images/generations")
async def create_images(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    async with MeteredCall(request, principal, IMAGES) as call:
        return await make_images(call, parse_generation(await call.json_body()))


async def upload(request: Request, principal: Principal, operation: str) -> Response:
    async with MeteredCall(request, principal, IMAGES) as call:
        form = await read_multipart(request)
        model_field = form.get("model")
        call.body = {"model": model_field} if isinstance(model_field, str) else {}
        return await make_images(call, await parse_upload(form, operation))


@router.post("/v1/images/edits")
async def create_image_edit(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await upload(request, principal, "edits")


@router.post("/v1/images/variations")
async def create_image_variation(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await upload(request, principal, "variations")
