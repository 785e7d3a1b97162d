"""uvicorn's httptools protocol, with the limits a public HTTP edge needs.

httptools (llhttp) is uvicorn's fastest parser but sets no limit of its own:
a 64 MiB header was buffered (quadratically: 4.3 s of CPU, 128 MiB 21 s)
before any route ran, a connection that sent half a header or one byte of a
body stayed open forever and held SIGTERM for the whole grace period, and
what the parser refused got a plain-text 400. This subclass adds, per
connection (``EdgeLimits``):

* **header size**: bytes of the request line and headers are counted in
  ``data_received`` *before* the parser sees them; past ``max_header_bytes``
  the request is refused with 431 (414 while the URL is still arriving),
  and past ``max_headers`` header lines with 431;
* **read timeouts**: a connection that has not sent a whole head within
  ``header_timeout_s`` is closed (408 where part of a head came), and a body
  that makes no progress for ``body_timeout_s`` ends as 408;
* **connections**: past ``max_connections`` open connections a new one is
  answered 503 ``overloaded`` and closed;
* **shutdown**: SIGTERM ends a stalled head or body at once instead of
  waiting the grace period on it.

Every refusal is an ``EzlinkError`` put in the scope of a stand-in request
(``REFUSAL_SCOPE_KEY``) and sent through the app, whose edge
(``api.edge``) renders it with the one error renderer: the client gets
OpenAI's error shape, and the access log and metrics see the request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from ezlink.errors import EzlinkError, InvalidRequestError, OverloadedError

logger = logging.getLogger(__name__)

# The scope key under which a refused request carries its error to the edge.
REFUSAL_SCOPE_KEY = "ezlink.refusal"
# The error the route gets from its next read of a body that stopped
# arriving (408) or that SIGTERM cut short (503), raised by the edge.
BODY_REFUSAL_SCOPE_KEY = "ezlink.body_refusal"
# After a refusal, what the client still sends is read and dropped this long
# before the socket closes: closing with unread data sends a reset, which
# can destroy the answer before the client reads it (nginx: lingering_close).
LINGER_SECONDS = 2.0
# The path a refused request is logged with is cut to this many characters.
LOGGED_PATH_CHARS = 256


@dataclass(frozen=True)
class EdgeLimits:
    """What one connection may cost (ServerConfig's fields of the same names)."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    max_connections: int = 2048


def header_too_large(limit: int) -> EzlinkError:
    return InvalidRequestError(
        f"The request line and headers are larger than the limit of {limit} bytes.",
        status_code=431,
        code="request_header_fields_too_large",
    )


def url_too_long(limit: int) -> EzlinkError:
    return InvalidRequestError(
        f"The request URL is longer than the limit of {limit} bytes.",
        status_code=414,
        code="uri_too_long",
    )


def too_many_headers(limit: int) -> EzlinkError:
    return InvalidRequestError(
        f"The request has more than the limit of {limit} header lines.",
        status_code=431,
        code="request_header_fields_too_large",
    )


def request_timeout(what: str, seconds: float) -> EzlinkError:
    return InvalidRequestError(
        f"The {what} did not arrive within {seconds:g} seconds.",
        status_code=408,
        code="request_timeout",
    )


def bad_http(reason: str) -> EzlinkError:
    return InvalidRequestError(f"Invalid HTTP request: {reason}.", code="invalid_http_request")


def shutting_down() -> EzlinkError:
    return OverloadedError(
        "The server is shutting down; retry on another instance or shortly.",
        code="shutting_down",
        headers={"Retry-After": "1"},
    )


def too_many_connections() -> EzlinkError:
    return OverloadedError(
        "The server has too many open connections; retry shortly.",
        headers={"Retry-After": "1", "Connection": "close"},
    )


class _LingeringTransport:
    """The transport as the refusal's cycle sees it: `close` sends the answer,
    shuts the write side, and closes the socket after LINGER_SECONDS."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        try:
            if transport.can_write_eof():
                transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        self._loop.call_later(LINGER_SECONDS, transport.close)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header limits, read timeouts, a connection cap and
    OpenAI-shaped refusals; `limits` is set by `guarded_protocol`."""

    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._in_message = False
        self._line_done = False
        self._header_lines = 0
        self._refused = False
        self._pending: EzlinkError | None = None
        self._guard: asyncio.TimerHandle | None = None
        # When the body last made progress (loop time).
        self._progress = 0.0

    # -- connection --------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(too_many_connections())
            return
        self._arm(self.limits.header_timeout_s, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """SIGTERM: a stalled head is closed and a stalled body answered 503, now."""
        if self._in_message and self._in_head and not self._refused:
            self._disarm()
            self.transport.close()
            return
        if self._reading_body():
            self._stop_body(shutting_down())
        super().shutdown()

    # -- reading -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped while the refusal lingers
        self._unset_keepalive_if_required()
        # A head is counted from its first byte: between requests (kept alive)
        # the parser has not begun the next message yet.
        if self._in_head or not self._in_message:
            room = self.limits.max_header_bytes - self._head_bytes
            # Once the request line has ended, what overflows is a header, not the URL.
            self._line_done = self._line_done or data.find(b"\n", 0, room) != -1
            if len(data) > room:
                # Feed only what the limit allows: if the head ends in it, go on.
                if not self._feed(data[:room]) or self._in_head:
                    if not self._refused:
                        limit = self.limits.max_header_bytes
                        self._refuse(
                            header_too_large(limit) if self._line_done else url_too_long(limit)
                        )
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Feed the parser; False when the request was refused."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if self._refused:
                return False
            self._refuse(self._pending or bad_http(str(exc).rstrip(".")))
            return False
        if self._refused:
            return False
        self._guard_what_is_left()
        return True

    def _guard_what_is_left(self) -> None:
        """Time a head or body left incomplete by this read. Armed only here, so
        the common request (whole in one read) costs no timer of its own."""
        if self._guard is not None or not self._in_message:
            return
        if self._in_head:
            self._arm(self.limits.header_timeout_s, self._on_header_timeout)
        elif self._reading_body():
            self._progress = self.loop.time()
            self._arm(self.limits.body_timeout_s, self._on_body_timeout)

    # -- parser callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = self._in_head = True
        self._header_lines = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        if self._header_lines > self.limits.max_headers:
            self._pending = too_many_headers(self.limits.max_headers)
            raise ValueError("too many headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._line_done = False
        self._disarm()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._progress = self.loop.time()

    def on_message_complete(self) -> None:
        self._in_message = False
        self._disarm()
        super().on_message_complete()

    # -- timeouts ----------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _reading_body(self) -> bool:
        return bool(self._in_message and not self._in_head and self.cycle and self.cycle.more_body)

    def _on_header_timeout(self) -> None:
        self._guard = None
        if self.transport.is_closing() or self._refused:
            return
        if self._in_message and self._in_head:
            self._refuse(request_timeout("request headers", self.limits.header_timeout_s))
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()  # idle: nothing to answer

    def _on_body_timeout(self) -> None:
        self._guard = None
        idle = self.loop.time() - self._progress
        if idle < self.limits.body_timeout_s:  # it made progress since: wait the rest
            self._arm(self.limits.body_timeout_s - idle, self._on_body_timeout)
            return
        self._stop_body(request_timeout("request body", self.limits.body_timeout_s))

    def _stop_body(self, error: EzlinkError) -> None:
        """The route gets `error` from its next read of the body (api.edge)."""
        self._disarm()
        cycle = self.cycle
        if cycle is None or self.transport.is_closing():
            return
        if cycle.response_complete:
            self.transport.close()  # answered without reading the body
            return
        if not cycle.more_body:
            return
        cycle.scope[BODY_REFUSAL_SCOPE_KEY] = error  # type: ignore[literal-required]
        cycle.keep_alive = False
        self._refused = True  # what still arrives is dropped
        cycle.message_event.set()

    # -- refusing ----------------------------------------------------------

    def _refuse(self, error: EzlinkError) -> None:
        """Answer `error` through the app (rendered by the edge) and close."""
        self._refused = True
        self._disarm()
        scope: Any = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": [],
            "state": self.app_state.copy(),
            "method": self._method(),
            "path": self._path(),
            "raw_path": b"",
            "query_string": b"",
            REFUSAL_SCOPE_KEY: error,
        }
        cycle = RequestResponseCycle(
            scope=scope,
            transport=_LingeringTransport(self.transport, self.loop),  # type: ignore[arg-type]
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=False,
            on_response=lambda: None,
        )
        cycle.more_body = False
        self.cycle = cycle
        self._start_asgi_task(cycle, self.app)

    def _method(self) -> str:
        if not getattr(self, "url", b""):
            return ""  # llhttp reports DELETE (0) for a method it could not read
        try:
            return str(self.parser.get_method().decode("ascii"))
        except Exception:
            return ""

    def _path(self) -> str:
        url = getattr(self, "url", b"") or b""
        return url.split(b"?", 1)[0][:LOGGED_PATH_CHARS].decode("latin-1")


def guarded_protocol(limits: EdgeLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, bound to `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
