"""One upstream provider's /v1/embeddings: one batch becomes one call, and the
answer becomes float32 rows.

The connection (pool, key, slots) and the classification of failed calls
live in ``ezlink.upstreams.http``, shared with the generation clients. Here:
malformed JSON, the wrong number of vectors, or an answer larger than its
batch can need are ``UpstreamCallFailed`` too.

It knows nothing of routing; ``ezlink.upstreams.routing`` decides where calls go.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from ezlink.errors import EzlinkError, InvalidRequestError
from ezlink.upstreams.http import (
    CLIENT_ERROR_STATUSES,
    MAX_RELAYED_MESSAGE,
    NOT_RETRYABLE_STATUSES,
    UpstreamCallFailed,
    UpstreamCallTimedOut,
    UpstreamConnection,
    UpstreamUnreachable,
    parse_retry_after,
    sanitize_message,
    status_error,
    transport_reason,
)

# Re-exported: callers and tests import the call's errors and helpers from here too.
__all__ = [
    "CLIENT_ERROR_STATUSES",
    "MAX_RELAYED_MESSAGE",
    "NOT_RETRYABLE_STATUSES",
    "UpstreamBatch",
    "UpstreamCallFailed",
    "UpstreamCallTimedOut",
    "UpstreamClient",
    "UpstreamReply",
    "UpstreamUnreachable",
    "parse_retry_after",
    "sanitize_message",
]

logger = logging.getLogger(__name__)

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


class UpstreamClient(UpstreamConnection):
    """One provider's pooled connection, speaking /v1/embeddings."""

    @property
    def forwards_token_ids(self) -> bool:
        return self.config.kind == "openai"

    @property
    def forwards_dimensions(self) -> bool:
        return self.config.kind == "openai"

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
        if self.config.kind == "anthropic":
            raise InvalidRequestError(
                f"This model's upstream `{self.name}` (Anthropic) serves chat completions, "
                "not embeddings.",
                param="model",
            )
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
                raise UpstreamCallFailed(self.name, transport_reason(exc)) from None
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
        return status_error(self.name, status, headers, content, self.secrets)


def _prompt_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if type(tokens) is int and tokens >= 0 else None
