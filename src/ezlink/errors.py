"""The one error hierarchy of ezlink.

Anything in the code base raises an ``EzlinkError`` (or a subclass); the API
layer renders it, in exactly one place (``api.errors.render_error``), as the
OpenAI error body::

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

An error is complete when constructed (status, fields, headers) and never
changed afterwards. The tree::

    EzlinkError (500 server_error)
    ├── InvalidRequestError (400)
    ├── AuthenticationError (401 invalid_api_key)
    ├── PermissionDeniedError (403)
    ├── NotFoundError (404) ── ModelNotFoundError (model_not_found)
    ├── MethodNotAllowedError (405)
    ├── PayloadTooLargeError (413)
    ├── RateLimitError (429) ── QuotaExceededError (insufficient_quota)
    ├── ClientClosedRequest (499: the client left; nobody reads the body)
    ├── OverloadedError (503)
    ├── UpstreamError (502) ── UpstreamUnavailableError (503), UpstreamTimeoutError (504)
    └── InternalError (500, a generic message)
"""

from __future__ import annotations

from typing import Any


class EzlinkError(Exception):
    """An error that a client may see, with its HTTP status and OpenAI fields."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # Only where one class covers several statuses (a relayed upstream 4xx).
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(EzlinkError):
    """The request is malformed or breaks a limit (400)."""

    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(EzlinkError):
    """No key, or a key we do not know (401)."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(EzlinkError):
    """A known key asks for something it may not do (403)."""

    status_code = 403
    error_type = "invalid_request_error"
    code = "permission_denied"


class NotFoundError(EzlinkError):
    """An unknown route or object (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
        )


class MethodNotAllowedError(EzlinkError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLargeError(EzlinkError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class RateLimitError(EzlinkError):
    """A rate limit or quota stops the request (429, with Retry-After)."""

    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"


class QuotaExceededError(RateLimitError):
    error_type = "insufficient_quota"
    code = "insufficient_quota"


class ClientClosedRequest(EzlinkError):
    """The client left before its answer was ready (499, what proxies log for it)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("The client closed the connection before the answer was ready.")


class OverloadedError(EzlinkError):
    """The server is past its capacity and sheds load (503, with Retry-After)."""

    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class UpstreamError(EzlinkError):
    """An upstream provider failed in a way the client did not cause (502)."""

    status_code = 502
    error_type = "upstream_error"
    code = "bad_gateway"


class UpstreamUnavailableError(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class InternalError(EzlinkError):
    """Anything unexpected; the message never carries details (500)."""

    status_code = 500
    error_type = "server_error"
    code = "internal_error"


class ConfigError(Exception):
    """The configuration is invalid; raised at start-up, never to a client."""
