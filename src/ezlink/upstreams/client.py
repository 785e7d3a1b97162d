"""One upstream provider: a pooled HTTP client that speaks OpenAI's /v1/embeddings.

It translates one batch into one upstream call and the answer back into
float32 rows, and classifies every way the call can go wrong:

* ``UpstreamCallFailed`` (502, or 504 for a timeout): the upstream failed —
  5xx, 429, connection errors, timeouts, malformed JSON, the wrong number of
  vectors, an answer larger than its batch can need. The router retries,
  falls back, and feeds its circuit breaker.
* a client error (400, 413, 422 from the upstream): the request itself is at
  fault, so it is raised as the same 4xx with the upstream's message sanitized.

It knows nothing of routing; ``ezlink.upstreams.routing`` decides where calls go.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import email.utils
import functools
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
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
# Answers larger than this are parsed off the event loop (~60 vectors of 1536 floats).
OFFLOAD_BYTES = 1 << 20
# A reply is read no further than its batch can need, so a misbehaving upstream
# cannot make us buffer gigabytes: per input, a vector of MAX_REPLY_DIMENSION JSON
# floats of JSON_FLOAT_BYTES each ("-0.012345678901234567, " is 23), both generous.
# Scaled by inputs, not fixed: 2048 inputs of 3072 JSON floats are a real ~140 MB.
MAX_REPLY_DIMENSION = 8192
JSON_FLOAT_BYTES = 32
# Room for `usage`, `model`, per-row keys and an error body, whatever the batch.
REPLY_SLACK_BYTES = 1 << 20
# Statuses that say "your request is wrong": relayed to the client as they are.
CLIENT_ERROR_STATUSES = frozenset({400, 413, 422})
# Statuses after which another try on the same upstream is pointless (our key,
# or the upstream's model name, is wrong): fall back at once.
NOT_RETRYABLE_STATUSES = frozenset({401, 403, 404})


@dataclass(frozen=True)
class UpstreamBatch:
    """One call's worth of inputs: texts, or cl100k token-id lists."""

    model: str
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    dimensions: int | None = None
    user: str | None = None

    @property
    def count(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])

    @property
    def max_reply_bytes(self) -> int:
        """The largest answer this batch can legitimately get (see MAX_REPLY_DIMENSION)."""
        # Not `dimensions`: an upstream that ignores it answers full-width vectors.
        return REPLY_SLACK_BYTES + self.count * MAX_REPLY_DIMENSION * JSON_FLOAT_BYTES


@dataclass(frozen=True)
class UpstreamReply:
    vectors: npt.NDArray[np.float32]
    # None when the upstream did not report usage.
    prompt_tokens: int | None
    # The call's own duration, not counting the wait for a free slot.
    seconds: float = 0.0


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


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, param, code) of an OpenAI-shaped error body, or of plain text."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: MAX_RELAYED_MESSAGE * 2].decode("utf-8", "replace"), None, None
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


def _decode_embedding(value: object) -> npt.NDArray[np.float32] | None:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not raw or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        return np.asarray(value, dtype=np.float32)
    return None


class UpstreamClient:
    """One provider's pooled httpx.AsyncClient; open() and close() are counted."""

    def __init__(self, config: UpstreamConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.name = config.name
        environ = os.environ if environ is None else environ
        self._api_key = environ.get(config.api_key_env, "") if config.api_key_env else ""
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._client: httpx.AsyncClient | None = None
        self._users = 0

    @property
    def forwards_token_ids(self) -> bool:
        return self.config.kind == "openai"

    @property
    def forwards_dimensions(self) -> bool:
        return self.config.kind == "openai"

    @property
    def display_url(self) -> str:
        return self.config.base_url.rstrip("/")

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

    def request_body(self, batch: UpstreamBatch) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": batch.model,
            "input": batch.texts if batch.texts is not None else batch.token_ids,
        }
        if self.config.kind == "openai":
            # Half the bytes of JSON floats, and exact; the reply may still be floats.
            body["encoding_format"] = "base64"
            if batch.dimensions is not None:
                body["dimensions"] = batch.dimensions
            if batch.user is not None:
                body["user"] = batch.user
        return body

    async def embed(self, batch: UpstreamBatch) -> UpstreamReply:
        """One upstream call, bounded by the configured timeout."""
        if self._client is None:
            raise RuntimeError(f"upstream {self.name} is not open")
        async with self._slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.config.timeout):
                    status, headers, content = await self._post(self._client, batch)
            except (TimeoutError, httpx.TimeoutException):
                raise UpstreamCallTimedOut(
                    self.name, f"no answer within {self.config.timeout:g}s"
                ) from None
            except httpx.ConnectError:
                raise UpstreamUnreachable(self.name, "connection refused or unreachable") from None
            except httpx.TransportError as exc:
                raise UpstreamCallFailed(self.name, _transport_reason(exc)) from None
            seconds = time.monotonic() - started
        read = functools.partial(self.read_reply, status, headers, content, batch)
        # Parsing megabytes of vectors would stall every other request on the loop.
        reply = await asyncio.to_thread(read) if len(content) > OFFLOAD_BYTES else read()
        return dataclasses.replace(reply, seconds=seconds)

    async def _post(
        self, client: httpx.AsyncClient, batch: UpstreamBatch
    ) -> tuple[int, httpx.Headers, bytes]:
        """Status, headers and body of one call; the body read no further than it may be."""
        limit = batch.max_reply_bytes
        chunks: list[bytes] = []
        received = 0
        content = orjson.dumps(self.request_body(batch))
        async with client.stream("POST", "embeddings", content=content) as response:
            # Decoded bytes are counted: a compressed reply is limited by what it expands to.
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limit:
                    raise UpstreamCallFailed(
                        self.name,
                        f"the answer exceeds {limit / (1 << 20):.1f} MiB, "
                        f"the limit for a batch of {batch.count}",
                    )
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    def read_reply(
        self, status: int, headers: Mapping[str, str], content: bytes, batch: UpstreamBatch
    ) -> UpstreamReply:
        """The vectors of a 2xx answer, or the error it stands for."""
        if status >= 300:
            raise self._status_error(status, headers, content)
        try:
            data: Any = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamCallFailed(self.name, "the answer is not valid JSON") from None
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise UpstreamCallFailed(self.name, "the answer has no `data` list")
        if len(rows) != batch.count:
            raise UpstreamCallFailed(self.name, f"{len(rows)} vectors for {batch.count} inputs")
        vectors = self._ordered_vectors(rows)
        return UpstreamReply(vectors=vectors, prompt_tokens=_prompt_tokens(data))

    def _ordered_vectors(self, rows: list[Any]) -> npt.NDArray[np.float32]:
        ordered: list[npt.NDArray[np.float32] | None] = [None] * len(rows)
        for position, row in enumerate(rows):
            if not isinstance(row, dict):
                raise UpstreamCallFailed(self.name, "a `data` item is not an object")
            index = row.get("index", position)
            if type(index) is not int or not 0 <= index < len(rows) or ordered[index] is not None:
                raise UpstreamCallFailed(self.name, "the `index` fields are not 0..n-1")
            vector = _decode_embedding(row.get("embedding"))
            if vector is None:
                raise UpstreamCallFailed(self.name, "an `embedding` is not a vector")
            ordered[index] = vector
        widths = {v.shape[0] for v in ordered if v is not None}
        if len(widths) != 1:
            raise UpstreamCallFailed(self.name, "the vectors differ in width")
        return np.stack([v for v in ordered if v is not None]).astype(np.float32, copy=False)

    def _status_error(self, status: int, headers: Mapping[str, str], content: bytes) -> EzlinkError:
        message, param, code = _error_fields(content)
        if status in CLIENT_ERROR_STATUSES:
            text = sanitize_message(message, (self._api_key,))
            error: EzlinkError
            if status == 413:
                error = PayloadTooLargeError(text, param=param)
            else:
                error = InvalidRequestError(text, param=param, code=code)
                error.status_code = status
            return error
        return UpstreamCallFailed(
            self.name,
            f"HTTP {status}",
            retryable=status not in NOT_RETRYABLE_STATUSES,
            retry_after=parse_retry_after(headers.get("retry-after")),
            status=status,
        )


def _prompt_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if type(tokens) is int and tokens >= 0 else None


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed before a complete answer"
    # The class name only: exception texts may carry the URL.
    return f"transport error ({type(exc).__name__})"
