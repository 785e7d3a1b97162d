"""The HTTP edge, pure ASGI: request ids and facts, the body-size limit, the last-resort 500.

Pure ASGI (not BaseHTTPMiddleware) so that the route can still hear the
client's disconnect and the body is counted as it streams in.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ezlink.api.errors import render_error
from ezlink.api.state import RequestFacts, attach_facts
from ezlink.errors import EzlinkError, InternalError, PayloadTooLargeError

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than the limit of {limit} bytes.", param=None
    )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given.decode() if given and _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        attach_facts(scope, RequestFacts(request_id=request_id))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await send_error(scope, receive, send_with_id, too_large(self.max_body_bytes))
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large(self.max_body_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send_with_id)
        except Exception as exc:
            logger.error("unhandled error (request %s)", request_id, exc_info=exc)
            if started:
                raise
            await send_error(
                scope,
                receive,
                send_with_id,
                InternalError(
                    f"The server had an error processing your request (request id {request_id})."
                ),
            )


async def send_error(scope: Scope, receive: Receive, send: Send, error: EzlinkError) -> None:
    """Answer with `error`, rendered by the one renderer."""
    await render_error(error)(scope, receive, send)
