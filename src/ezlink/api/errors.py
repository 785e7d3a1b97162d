"""The one place where errors become OpenAI-shaped responses."""

from __future__ import annotations

from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ezlink.errors import (
    EzlinkError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)


def error_response(error: EzlinkError) -> Response:
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
    error = EzlinkError(str(exc.detail) or HTTPStatus(exc.status_code).phrase)
    error.status_code = exc.status_code
    error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error


def install_error_handlers(app: FastAPI) -> None:
    async def on_ezlink_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EzlinkError)
        return error_response(exc)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(from_http_exception(exc, request))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(
            InvalidRequestError(first.get("msg", "Invalid request."), param=param)
        )

    app.add_exception_handler(EzlinkError, on_ezlink_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
