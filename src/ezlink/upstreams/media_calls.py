"""One relayed call of the media families (``media_relay``) on one route: the
request encoded for the route's upstream (JSON, or multipart re-encoded with
the mapped model name), the answer read within a bound, the upstream's
breaker and statistics kept as ``UpstreamEndpoint.call`` keeps them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson

from ezlink.engine.media_types import UploadedFile
from ezlink.errors import EzlinkError, UpstreamError
from ezlink.upstreams.endpoint import UpstreamEndpoint
from ezlink.upstreams.http import (
    UpstreamCallFailed,
    UpstreamCallTimedOut,
    UpstreamUnreachable,
    status_error,
    transport_reason,
)
from ezlink.upstreams.routes import Route, RouteFailed, ensure_available

if TYPE_CHECKING:
    from ezlink.upstreams.routing import RoutedModel

T = TypeVar("T")

MAX_ERROR_BYTES = 64 << 10


def upstream_of(route: Route) -> UpstreamEndpoint:
    if route.endpoint is None:
        # Local routes are embeddings models: they serve none of these families.
        error = UpstreamError(f"The local model `{route.target}` does not serve this request.")
        raise RouteFailed(error, circuit_open=True)
    ensure_available(route.endpoint)
    return route.endpoint


def transport_failure(endpoint: UpstreamEndpoint, exc: httpx.TransportError) -> UpstreamCallFailed:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamCallTimedOut(endpoint.name, "no answer in time")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamUnreachable(endpoint.name, "connection refused or unreachable")
    return UpstreamCallFailed(endpoint.name, transport_reason(exc))


async def read_bounded(endpoint: UpstreamEndpoint, response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UpstreamCallFailed(endpoint.name, f"the answer exceeds {limit >> 20} MiB")
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > limit:
            raise UpstreamCallFailed(endpoint.name, f"the answer exceeds {limit >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def open_answer(
    endpoint: UpstreamEndpoint, path: str, content: bytes, content_type: str
) -> httpx.Response:
    """Send; the answer's head is read (a non-2xx raised as its error), its body not yet."""
    connection = endpoint.client
    http = connection.http
    request = http.build_request(
        "POST", path, content=content, headers={"Content-Type": content_type}
    )
    response = await http.send(request, stream=True)
    if response.status_code >= 300:
        try:
            body = await read_bounded(endpoint, response, MAX_ERROR_BYTES)
        finally:
            await response.aclose()
        raise status_error(
            endpoint.name, response.status_code, response.headers, body, connection.secrets
        )
    return response


async def kept(endpoint: UpstreamEndpoint, call: Callable[[], Awaitable[T]]) -> T:
    """`call`, with the upstream's breaker and statistics kept as ``endpoint.call`` keeps them."""
    endpoint.calls += 1
    endpoint.in_flight += 1
    started = time.monotonic()
    try:
        result = await call()
    except UpstreamCallFailed as exc:
        endpoint.record_failure(exc)
        raise
    except EzlinkError:
        endpoint.record_success(time.monotonic() - started)  # it answered: healthy
        raise
    except httpx.TransportError as exc:
        failure = transport_failure(endpoint, exc)
        endpoint.record_failure(failure)
        raise failure from None
    except BaseException:
        endpoint.breaker.abandon()
        raise
    finally:
        endpoint.in_flight -= 1
    endpoint.record_success(time.monotonic() - started)
    return result


async def whole_answer(
    model: RoutedModel,
    path: str,
    encode: Callable[[Route], tuple[bytes, str]],
    limit: int,
    expect_json: bool = True,
) -> tuple[bytes, str]:
    """(body, content type) of the first route's answer, read whole within `limit`;
    an answer that is not the JSON object expected fails the call (retried)."""
    deadline = deadline_of(model)

    async def on_route(route: Route) -> tuple[bytes, str]:
        endpoint = upstream_of(route)
        content, content_type = encode(route)

        async def call() -> tuple[bytes, str]:
            async with endpoint.client.slots:
                response = await open_answer(endpoint, path, content, content_type)
                try:
                    body = await read_bounded(endpoint, response, limit)
                finally:
                    await response.aclose()
            if expect_json and not isinstance(parsed_json(body), dict):
                raise UpstreamCallFailed(endpoint.name, "the answer is not a JSON object")
            return body, response.headers.get("content-type", "application/json")

        return await model.call_with_retries(endpoint, lambda: kept(endpoint, call), deadline)

    return await model.first_success(on_route, deadline)


def deadline_of(model: RoutedModel) -> float:
    return asyncio.get_running_loop().time() + model.config.timeout


def json_body(fields: dict[str, Any], upstream_model: str) -> tuple[bytes, str]:
    return orjson.dumps({**fields, "model": upstream_model}), "application/json"


def multipart_body(
    fields: dict[str, Any], files: list[tuple[str, UploadedFile]], upstream_model: str
) -> tuple[bytes, str]:
    """The form re-encoded with the upstream's model name: (body, content type)."""
    data: dict[str, Any] = {}
    for name, value in {**fields, "model": upstream_model}.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            data[name] = [form_value(item) for item in value]
        else:
            data[name] = form_value(value)
    encoded = httpx.Request(
        "POST",
        "http://upstream/",
        data=data,
        files=[(name, (f.filename, f.content, f.content_type)) for name, f in files],
    )
    return encoded.read(), encoded.headers["content-type"]


def form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def parsed_json(content: bytes) -> Any:
    """The JSON value of an answer, or None when it is not JSON."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
