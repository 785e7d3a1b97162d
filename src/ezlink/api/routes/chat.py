"""POST /v1/chat/completions and POST /v1/completions.

Both walk the metered call; a streamed answer then hands settlement to its
stream (``api.streaming``), which bills what the client received, however
the stream ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.billing import Bound
from ezlink.api.auth import Principal, require_principal
from ezlink.api.metered import MeteredCall, token_counts
from ezlink.api.protocol.chat import parse_chat_request, parse_completion_request
from ezlink.api.protocol.chat_render import Answer, Collector, render_whole
from ezlink.api.streaming import GenerationStream
from ezlink.engine.generation_types import Generation, GenerationRequest
from ezlink.engine.types import CHAT, COMPLETIONS, Capability, Generator

router = APIRouter()

# Completion tokens held for a request when neither it (max_tokens) nor the
# model says how many it may produce.
DEFAULT_RESERVED_COMPLETION = 1024


def generation_bound(request: GenerationRequest, body_bytes: int, model: Generator) -> Bound:
    """The most a generation may use, before it runs: a prompt of at most one
    token per byte of its body (a token is at least one byte of text), and n
    answers of max_tokens (or the model's own bound)."""
    completion = (
        request.sampling.max_tokens
        or model.card.max_output_tokens
        or DEFAULT_RESERVED_COMPLETION
    )
    return Bound(prompt_tokens=body_bytes, output_tokens=request.n * completion)


async def collect(generation: Generation, collector: Collector) -> None:
    """Gather every piece; the generation is closed however this ends."""
    try:
        async for delta in generation:
            collector.add(delta)
    finally:
        await generation.aclose()


async def answer(
    request: Request,
    principal: Principal,
    family: Capability,
    parse: Callable[[dict[str, Any]], GenerationRequest],
) -> Response:
    async with MeteredCall(request, principal, family) as call:
        parsed = parse(await call.json_body())
        call.counted(parsed.n)
        model = cast(Generator, call.pick(parsed.model))
        await call.admit(
            user=parsed.user,
            stream=parsed.stream,
            bound=generation_bound(parsed, len(await request.body()), model),
        )
        generation = model.generate(parsed)
        reply = Answer(parsed.kind, parsed.model)
        if parsed.stream:
            stream = GenerationStream(call, generation, reply, parsed.include_usage)
            # Errors before the first piece are ordinary error responses
            # (retries and fallbacks happen before it); after it, events.
            await stream.start()
            return stream.response(call.headers)
        collector = Collector()
        try:
            await call.run(collect(generation, collector))
        finally:
            # Billed for what was produced, whichever way it ended.
            call.used(token_counts(generation.usage))
        finish = next(iter(collector.ordered())).finish_reason if collector.choices else None
        call.succeeded(token_counts(generation.usage), finish_reason=finish)
    relayed = generation.response
    body = (
        # The provider's object as it came, with the public model name and the
        # usage billed (ezlink's count where the provider gave none).
        orjson.dumps({**relayed, "model": parsed.model, "usage": generation.usage.to_openai()})
        if relayed is not None
        else render_whole(reply, collector, generation.usage)
    )
    return Response(body, media_type="application/json", headers=call.headers)


@router.post("/v1/chat/completions")
async def create_chat_completion(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await answer(request, principal, CHAT, parse_chat_request)


@router.post("/v1/completions")
async def create_completion(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await answer(request, principal, COMPLETIONS, parse_completion_request)
