"""What every provider client shares: one pooled connection per upstream, and
the classification of a failed call.

``UpstreamConnection`` owns an upstream's ``httpx.AsyncClient`` (headers, key,
query parameters, pool limits) and its ``max_concurrency`` slots; the
embeddings client (``client.UpstreamClient``) is one, and the generation
clients (``openai_chat``, ``providers``) call through the same one, so that
one upstream has one pool and one concurrency bound whatever it serves.

How a call can fail:

* ``UpstreamCallFailed`` (502, or 504 for a timeout): the upstream failed —
  5xx, 429, connection errors, timeouts, malformed answers. The router
  retries, falls back, and feeds its circuit breaker.
* a client error (400, 413, 422 from the upstream): the request itself is at
  fault, so it is raised as the same 4xx with the upstream's message sanitized.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from ezlink.config import UpstreamConfig
from ezlink.errors import (
    EzlinkError,
    InvalidRequestError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)

logger = logging.getLogger(__name__)

# Upper bound on a message relayed from an upstream, so it cannot flood a client.
MAX_RELAYED_MESSAGE = 400
# Statuses that say "your request is wrong": relayed to the client as they are.
CLIENT_ERROR_STATUSES = frozenset({400, 413, 422})
# Statuses after which another try on the same upstream is pointless (our key,
# or the upstream's model name, is wrong): fall back at once.
NOT_RETRYABLE_STATUSES = frozenset({401, 403, 404})


class UpstreamCallFailed(UpstreamError):
    """The upstream failed this call (not the client's fault)."""

    def __init__(
        self,
        upstream: str,
        reason: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"Upstream `{upstream}` failed: {reason}.")
        self.upstream = upstream
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class UpstreamCallTimedOut(UpstreamCallFailed, UpstreamTimeoutError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamCallFailed):
    """No connection could be made: the upstream is down (503 when every route is)."""


_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_URL = re.compile(r"(?i)\bhttps?://[^\s\"'<>]+")
_SECRET_LIKE = re.compile(r"\b(sk|pk|rk|key|token)[-_][A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


def sanitize_message(message: str, secrets: tuple[str, ...] = ()) -> str:
    """An upstream's error text, fit for our client: no secrets, URLs or stack."""
    # A stack trace, if any, starts the part we never relay.
    message = re.split(r"Traceback \(most recent call last\)", message, maxsplit=1)[0]
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _URL_CREDENTIALS.sub(r"\1***@", message)
    message = _URL.sub("<url>", message)
    message = _SECRET_LIKE.sub(r"\1-***", message)
    message = _BEARER.sub("Bearer ***", message)
    message = " ".join(message.split())
    if len(message) > MAX_RELAYED_MESSAGE:
        message = message[: MAX_RELAYED_MESSAGE - 3] + "..."
    return message or "The upstream rejected the request."


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, param, code) of an OpenAI-shaped error body, or of plain text."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: MAX_RELAYED_MESSAGE * 2].decode("utf-8", "replace"), None, None
    return error_object_fields(data)


def error_object_fields(data: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) of a parsed error object (a body, or a stream's error event)."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        param, code = error.get("param"), error.get("code")
        return (
            message if isinstance(message, str) else "",
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )
    if isinstance(error, str):  # TEI and others: {"error": "...", "error_type": ...}
        return error, None, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None, None
    return "", None, None


def status_error(
    upstream: str,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    secrets: tuple[str, ...] = (),
) -> EzlinkError:
    """The error a non-2xx answer stands for: the client's 4xx, or a failed call."""
    if status in CLIENT_ERROR_STATUSES:
        message, param, code = error_fields(content)
        text = sanitize_message(message, secrets)
        if status == 413:
            return PayloadTooLargeError(text, param=param)
        return InvalidRequestError(text, param=param, code=code, status_code=status)
    return UpstreamCallFailed(
        upstream,
        f"HTTP {status}",
        retryable=status not in NOT_RETRYABLE_STATUSES,
        retry_after=parse_retry_after(headers.get("retry-after")),
        status=status,
    )


def transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed before a complete answer"
    # The class name only: exception texts may carry the URL.
    return f"transport error ({type(exc).__name__})"


class UpstreamConnection:
    """One provider's pooled httpx.AsyncClient; open() and close() are counted."""

    def __init__(self, config: UpstreamConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.name = config.name
        environ = os.environ if environ is None else environ
        self._api_key = environ.get(config.api_key_env, "") if config.api_key_env else ""
        # Calls in flight to this upstream, whatever they are for.
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._client: httpx.AsyncClient | None = None
        self._users = 0

    @property
    def display_url(self) -> str:
        return self.config.base_url.rstrip("/")

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never reach a client in a relayed message."""
        return (self._api_key,)

    @property
    def slots(self) -> asyncio.Semaphore:
        return self._slots

    @property
    def http(self) -> httpx.AsyncClient:
        """The open pooled client; RuntimeError before open()."""
        if self._client is None:
            raise RuntimeError(f"upstream {self.name} is not open")
        return self._client

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        if self._api_key:
            header = self.config.api_key_header
            bearer = header.lower() == "authorization"
            headers[header] = f"Bearer {self._api_key}" if bearer else self._api_key
        return headers

    async def open(self) -> None:
        self._users += 1
        if self._client is None:
            if self.config.api_key_env and not self._api_key:
                logger.warning(
                    "upstream %s: $%s is not set; calling it without a key",
                    self.name,
                    self.config.api_key_env,
                )
            timeout = self.config.timeout
            self._client = httpx.AsyncClient(
                base_url=self.display_url + "/",
                headers=self._headers(),
                params=self.config.params,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(
                    max_connections=self.config.max_concurrency,
                    max_keepalive_connections=self.config.max_concurrency,
                ),
                follow_redirects=False,
            )

    async def close(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class ConnectedClient:
    """A provider client over one upstream's pooled connection: its name, and
    opening and closing the connection; subclasses add what they call."""

    def __init__(self, connection: UpstreamConnection) -> None:
        self.connection = connection

    @property
    def name(self) -> str:
        return self.connection.name

    async def open(self) -> None:
        await self.connection.open()

    async def close(self) -> None:
        await self.connection.close()
