"""An ASGI app served by uvicorn in a thread of the test process: the fake upstreams' server.

The socket is bound before the server starts (on a port the OS picks), so no
other process can take the port between choosing and binding it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn


class ThreadedServer:
    """Serves `app` on 127.0.0.1 in a daemon thread; a context manager."""

    def __init__(self, app: Any, **config: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **config}
        self._server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
