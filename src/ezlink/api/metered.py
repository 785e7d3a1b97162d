"""One metered call: the path every API family's route walks.

    authenticate → parse → pick the model → admit → run → settle → render

A route opens a ``MeteredCall`` (``async with``) after authentication and
does the rest inside it::

    async with MeteredCall(request, principal, EMBEDDINGS) as call:
        parsed = parse_x(await call.json_body())
        model = call.pick(parsed.model)
        await call.admit(inputs=..., user=parsed.user)
        result = await call.run(model.embed(parsed.request))
        call.succeeded(TokenCounts(prompt=result.prompt_tokens))
    return Response(render_x(result), headers=call.headers)

Whichever way the block ends is settled here, exactly once: a refusal
before admission (400, 404, 503) is recorded with no tokens; after
admission, a success is charged, an error or a departed client (499) is
recorded with what was used. A streamed answer hands settlement over to its
stream (``hand_over``), which settles (``settle_stream``) when the last
byte is sent or the client leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

from fastapi import Request

from ezlink.accounts.billing import Bound
from ezlink.accounts.service import Meter, TokenCounts, Units
from ezlink.api.auth import Principal
from ezlink.api.protocol.common import parse_json_object
from ezlink.api.state import app_state, request_facts
from ezlink.engine.generation_types import Usage
from ezlink.engine.types import Capability, ServedModel
from ezlink.errors import ClientClosedRequest, EzlinkError, ModelNotFoundError, OverloadedError

T = TypeVar("T")


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
        raise ClientClosedRequest
    return task.result()


def token_counts(usage: Usage) -> TokenCounts:
    """A generation's usage, as the accounts record it."""
    return TokenCounts(
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
        cached=usage.cached_tokens,
        reasoning=usage.reasoning_tokens,
        counted_by_ezlink=usage.counted_by_ezlink,
    )


def model_loading() -> OverloadedError:
    return OverloadedError(
        "The model is still loading; retry shortly.",
        code="model_loading",
        headers={"Retry-After": "1"},
    )


class MeteredCall:
    """One request's passage through model choice, the accounts, and its work."""

    def __init__(self, request: Request, principal: Principal, family: Capability) -> None:
        self.request = request
        self.family = family
        self.principal = principal
        self.state = app_state(request)
        self.facts = request_facts(request)
        self.started = time.perf_counter()
        self.meter: Meter | None = None
        # What a refusal before admission is recorded with.
        self.body: dict[str, Any] = {}
        self.inputs = 0
        # Settlement handed to a stream, which settles when it ends.
        self._handed_over = False
        self._admission_tried = False
        self._tokens: TokenCounts | None = None
        self._succeeded = False

    # -- the steps a route takes ---------------------------------------------

    async def json_body(self) -> dict[str, Any]:
        """The request's JSON object (400 when it is not one)."""
        self.body = parse_json_object(await self.request.body())
        return self.body

    def pick(self, name: str) -> ServedModel:
        """The model that will answer, or the refusal: 404 (unknown or not
        allowed for this key), 400 (without this family), 503 (loading, or full)."""
        registry = self.state.registry
        if not self.principal.may_use(name):
            raise ModelNotFoundError(name)
        model = registry.get(name, self.family)
        # Only a name that is served: metrics label by it, and must stay bounded.
        self.facts.model = name
        if not registry.ready:
            raise model_loading()
        # Shed load before any accounting: under a burst a refused request
        # must cost next to nothing (no database round trips) to come at once.
        model.check_room()
        return model

    def counted(self, inputs: int) -> None:
        """How many inputs the request carries (for usage and the access log)."""
        self.inputs = inputs
        self.facts.inputs = inputs

    async def admit(
        self, *, user: str | None = None, stream: bool = False, bound: Bound | None = None
    ) -> None:
        """Quota, rate limits and credits (429 past them); from here on usage
        is settled however the request ends. `bound` is the most the request
        may use, known before it runs (its route says how: tokens in and out,
        or units such as n images): its tokens are taken from the key's TPM
        and quota now and its most cost is held from its team's balance; all
        are settled to the real count."""
        # A refused admission records itself (accounts.admit).
        self._admission_tried = True
        accounts = self.state.accounts
        model = self.facts.model or ""
        bound = bound or Bound()
        self.meter = await accounts.admit(
            key_id=self.principal.key_id,
            limits=self.principal.limits,
            model=model,
            inputs=self.inputs,
            user=user,
            request_id=self.facts.request_id,
            family=self.family,
            stream=stream,
            reserve_tokens=bound.prompt_tokens + bound.output_tokens,
            price=accounts.credits.price(model),
            bound=bound,
        )

    async def run(self, work: Awaitable[T]) -> T:
        """Await `work`, cancelling it if the client leaves (then 499)."""
        return await unless_disconnected(self.request, work)

    def used(self, tokens: TokenCounts) -> None:
        """What the work used so far: charged even if the request then fails."""
        self._tokens = tokens
        self.facts.tokens = tokens.total

    def succeeded(
        self,
        tokens: TokenCounts | None = None,
        *,
        units: Units | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """The work succeeded: its tokens and/or units (images, audio seconds, characters)."""
        self.used(tokens or TokenCounts())
        self._succeeded = True
        if self.meter is not None:
            self.meter.finish_reason = finish_reason
            if units is not None:
                self.meter.units = units

    @property
    def headers(self) -> dict[str, str]:
        """Headers for the answer: the key's x-ratelimit-* state."""
        return self.meter.headers if self.meter is not None else {}

    def hand_over(self) -> None:
        """A stream takes over settlement: leaving the block no longer settles,
        `settle_stream` does, when the stream ends (however it ends)."""
        assert self.meter is not None, "admit before streaming"
        self._handed_over = True

    def first_byte(self) -> float:
        """Mark the first byte of a streamed answer; seconds since arrival."""
        seconds = time.perf_counter() - self.started
        if self.meter is not None:
            self.meter.first_byte_s = seconds
        return seconds

    async def settle_stream(
        self, tokens: TokenCounts, *, error: BaseException | None = None
    ) -> None:
        """Settle a handed-over stream: what it sent, and how it ended
        (`error`: failed or the client left; None: complete)."""
        assert self.meter is not None and self._handed_over
        self.facts.tokens = tokens.total
        await self.state.accounts.settle(self.meter, tokens=tokens, error=error)

    # -- settlement ------------------------------------------------------------

    async def __aenter__(self) -> MeteredCall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        accounts = self.state.accounts
        if self.meter is None:
            if isinstance(exc, EzlinkError) and not self._admission_tried:
                # Refused before admission: still the key's usage (with no
                # tokens), so operators reading usage see its 400s, 404s, 503s.
                accounts.record_refusal(
                    key_id=self.principal.key_id,
                    model=_text(self.body, "model") or "",
                    inputs=self.inputs,
                    error=exc,
                    started=self.started,
                    user=_text(self.body, "user"),
                    request_id=self.facts.request_id,
                    family=self.family,
                )
            return
        if self._handed_over and exc is None:
            return
        if exc is not None:
            await accounts.settle(self.meter, tokens=self._tokens, error=exc)
        elif self._succeeded:
            await accounts.settle(self.meter, tokens=self._tokens)
        else:
            await accounts.settle(self.meter, tokens=self._tokens, error=ClientClosedRequest())


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None
