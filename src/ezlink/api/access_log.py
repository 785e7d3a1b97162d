"""Pure ASGI middleware that measures and logs every HTTP request.

It sits outside every other middleware, so it sees the final status even of
requests refused early (413) or failed (500). Auth and the route tell it what
they did through the request's ``RequestFacts`` (``api.state``): the
principal, whose display prefix is logged (never the key), the model, the
inputs and the tokens.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ezlink.api.state import RequestFacts, facts_in
from ezlink.ops.metrics import Metrics

logger = logging.getLogger("ezlink.access")

# Probes and scrapes arrive every few seconds; they are logged at debug only.
QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})
UNMATCHED_ROUTE = "unmatched"


def route_of(scope: Scope) -> str:
    """The route template (bounded label values), not the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        counted = scope.get("path") not in QUIET_PATHS
        if counted:
            self.metrics.in_flight.inc()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            if counted:
                self.metrics.in_flight.dec()
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        facts = facts_in(scope) or RequestFacts(request_id="")
        model = facts.model or ""
        inputs, tokens, principal = facts.inputs, facts.tokens, facts.principal
        self.metrics.observe_request(route_of(scope), model, status, seconds, inputs, tokens)
        fields: dict[str, Any] = {
            "request_id": facts.request_id or None,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "latency_ms": round(seconds * 1000, 2),
            "key": principal.display if principal is not None else None,
            "model": model or None,
            "inputs": inputs,
            "tokens": tokens,
            **facts.extra,
        }
        fields = {key: value for key, value in fields.items() if value is not None}
        level = logging.DEBUG if scope.get("path") in QUIET_PATHS else logging.INFO
        logger.log(
            level,
            "%s %s %d %.1fms",
            scope.get("method"),
            scope.get("path"),
            status,
            seconds * 1000,
            extra={"fields": fields},
        )
