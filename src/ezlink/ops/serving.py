"""Running the app under uvicorn, with ezlink's logs and a clean SIGTERM."""

from __future__ import annotations

import math
import signal
from types import FrameType

import uvicorn
from starlette.types import ASGIApp


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


def serve_app(app: ASGIApp, host: str, port: int, log_level: str, grace_seconds: float) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get `grace_seconds` to finish."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # ezlink.ops.logging (JSON or text) and ezlink.access replace uvicorn's own.
        log_config=None,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(grace_seconds),
    )
    server = uvicorn.Server(config)
    exit_cleanly_after_drain(server)
    server.run()
