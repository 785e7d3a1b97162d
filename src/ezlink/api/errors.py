"""The one place where errors become OpenAI-shaped responses.

``render_error`` is the only function that turns an error into bytes: the
exception handlers below call it for errors raised in a route, and the edge
middleware (``api.edge``) calls it for what it refuses before a route runs
and for the last-resort 500.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ezlink.errors import (
    EzlinkError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)


def render_error(error: EzlinkError) -> Response:
    """The OpenAI error body with the error's status and headers."""
    return Response(
        orjson.dumps(error.to_body()),
        status_code=error.status_code,
        headers=error.headers,
        media_type="application/json",
    )


def from_http_exception(exc: StarletteHTTPException, request: Request) -> EzlinkError:
    """Starlette's own errors (routing) in our hierarchy."""
    if exc.status_code == 404:
        return NotFoundError(f"Unknown route: {request.method} {request.url.path}.")
    if exc.status_code == 405:
        return MethodNotAllowedError(
            f"Method {request.method} is not allowed on {request.url.path}.",
            headers=dict(exc.headers or {}),
        )
    message = str(exc.detail) or HTTPStatus(exc.status_code).phrase
    if exc.status_code < 500:
        return InvalidRequestError(message, status_code=exc.status_code)
    return EzlinkError(message, status_code=exc.status_code)


def from_validation_error(exc: ValidationError | RequestValidationError) -> InvalidRequestError:
    """A pydantic error as a 400 whose `param` is the path of the first bad field."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ())]
    # FastAPI prefixes where the value came from ("body", "query").
    if isinstance(exc, RequestValidationError) and location:
        location = location[1:]
    param = ".".join(location) or None
    message = first.get("msg", "Invalid request.")
    return InvalidRequestError(f"{param}: {message}" if param else message, param=param)


def install_error_handlers(app: FastAPI) -> None:
    async def on_ezlink_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EzlinkError)
        return render_error(exc)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return render_error(from_http_exception(exc, request))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render_error(from_validation_error(exc))

    app.add_exception_handler(EzlinkError, on_ezlink_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
