"""Running the app under uvicorn, with ezlink's logs, the edge's limits and a clean SIGTERM.

The parser is httptools behind ``ops.http_protocol`` (header limits, read
timeouts, a connection cap, OpenAI-shaped refusals); measured against h11,
which has a header limit of its own but no timeouts either, in
bench/README.md ("HTTP edge").
"""

from __future__ import annotations

import math
import signal
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from ezlink.config import ServerConfig
from ezlink.ops.http_protocol import EdgeLimits, guarded_protocol


def exit_cleanly_after_drain(server: uvicorn.Server) -> None:
    """Make a drained SIGTERM end the process with status 0.

    uvicorn handles SIGTERM (stop accepting, finish in-flight requests, run the
    lifespan shutdown), then re-raises the signal, which would end the process
    "killed by SIGTERM"; process managers read that as a crash. Once the server
    has started, the re-raised signal is therefore ignored; before that, SIGTERM
    keeps its default meaning.
    """

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if server.started:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def edge_limits(server: ServerConfig) -> EdgeLimits:
    return EdgeLimits(
        max_header_bytes=server.max_header_bytes,
        max_headers=server.max_headers,
        header_timeout_s=server.header_timeout_seconds,
        body_timeout_s=server.body_timeout_seconds,
        max_connections=server.max_connections,
    )


def serve_app(app: ASGIApp, host: str, port: int, log_level: str, settings: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get the settings'
    `shutdown_grace_seconds` to finish; the edge's limits are the settings'."""
    grace_seconds = settings.shutdown_grace_seconds
    limits = edge_limits(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # ezlink.ops.logging (JSON or text) and ezlink.access replace uvicorn's own.
        log_config=None,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(grace_seconds),
        http=guarded_protocol(limits),
        # The accept queue in front of max_connections (uvicorn's default: 2048).
        backlog=max(2048, limits.max_connections),
    )
    server = uvicorn.Server(config)
    exit_cleanly_after_drain(server)
    server.run()
