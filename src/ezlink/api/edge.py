"""The HTTP edge, pure ASGI: request ids and facts, the body-size limit, the last-resort 500.

Pure ASGI (not BaseHTTPMiddleware) so that the route can still hear the
client's disconnect and the body is counted as it streams in.

It also renders what the HTTP protocol (``ops.http_protocol``) refused before
a route could run (431, 414, 408, 400 for what the parser rejects, 503 past
the connection cap), turns a body that stopped arriving into 408 and a
client that left mid-body into 499 (logged at info, no traceback), and
refuses a compressed body (415): ``Content-Encoding`` is not supported, so
a gzip body is never mistaken for bad JSON, and no zip bomb is inflated.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ezlink.api.errors import render_error
from ezlink.api.state import RequestFacts, attach_facts
from ezlink.errors import (
    ClientClosedRequest,
    EzlinkError,
    InternalError,
    InvalidRequestError,
    PayloadTooLargeError,
)
from ezlink.ops.http_protocol import BODY_REFUSAL_SCOPE_KEY, REFUSAL_SCOPE_KEY

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


def unsupported_encoding(encoding: bytes) -> InvalidRequestError:
    return InvalidRequestError(
        f"Content-Encoding {encoding.decode('latin-1')!r} is not supported; "
        "send the request body uncompressed.",
        status_code=415,
        code="unsupported_content_encoding",
    )


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, upload_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Paths that take file uploads: a multipart/form-data body there may be larger.
        self.upload_limits = dict(upload_limits or {})

    def body_limit(self, scope: Scope) -> int:
        """The most bytes this request's body may have."""
        upload = self.upload_limits.get(scope.get("path", ""))
        content_type = (_header(scope, b"content-type") or b"").lower()
        if upload is not None and content_type.startswith(b"multipart/form-data"):
            return max(upload, self.max_body_bytes)
        return self.max_body_bytes

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

        refusal = scope.get(REFUSAL_SCOPE_KEY)
        if isinstance(refusal, EzlinkError):
            await send_error(scope, receive, send_with_id, refusal)
            return
        limit = self.body_limit(scope)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(scope, receive, send_with_id, too_large(limit))
            return
        encoding = _header(scope, b"content-encoding")
        if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
            await send_error(scope, receive, send_with_id, unsupported_encoding(encoding))
            return

        received = 0
        body_done = False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            message = await receive()
            if body_done:
                return message
            stopped = scope.get(BODY_REFUSAL_SCOPE_KEY)
            if isinstance(stopped, EzlinkError):
                raise stopped  # the body stopped arriving (408), or SIGTERM came (503)
            if message["type"] == "http.disconnect":
                raise ClientClosedRequest
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    raise too_large(limit)
            return message

        try:
            await self.app(scope, counting_receive, send_with_id)
        except ClientDisconnect:
            # The client left: nothing can be answered, the access log says 499.
            if not started:
                await send_error(scope, receive, send_with_id, ClientClosedRequest())
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
