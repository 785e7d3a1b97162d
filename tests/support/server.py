"""Start a real `ezlink serve` process on a free loopback port, and always stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

STARTUP_TIMEOUT_S = 120
# free_port() only finds a port free now: another process may take it before the
# server binds, and the server then exits saying so; it is retried on a new port.
PORT_ATTEMPTS = 3
PORT_TAKEN_MESSAGE = "address already in use"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(data: Mapping[str, Any], directory: Path | None = None) -> Path:
    directory = directory or Path(tempfile.mkdtemp(prefix="ezlink-test-"))
    path = directory / "ezlink.yaml"
    path.write_text(yaml.safe_dump(dict(data)), encoding="utf-8")
    return path


class PortTakenError(RuntimeError):
    """The server exited at start because another process had taken its port."""


class ServerProcess:
    """`ezlink serve` as a subprocess; use as a context manager."""

    def __init__(
        self,
        config: Path | None = None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        master_key: str | None = None,
    ) -> None:
        self.port = free_port()
        self.master_key = master_key
        self.log_path = Path(tempfile.mkstemp(prefix="ezlink-server-", suffix=".log")[1])
        config_args = ["--config", str(config)] if config is not None else []
        self.serve_args = [*config_args, *(args or [])]
        self.env = {**os.environ, **(env or {})}
        if master_key is not None:
            self.env["EZLINK_MASTER_KEY"] = master_key
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "ezlink", "serve", "--port", str(self.port), *self.serve_args]

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"} if self.master_key else {}

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process and return at once (the models may still be loading)."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return self.process

    def start(self) -> ServerProcess:
        """Launch and wait for /ready; on a new port when another process took this one."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                return self._start_on_port()
            except PortTakenError:
                self.port = free_port()
        return self._start_on_port()

    def _start_on_port(self) -> ServerProcess:
        self.process = self.launch()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                logs = self.logs()
                if PORT_TAKEN_MESSAGE in logs.lower():
                    raise PortTakenError(f"port {self.port} was taken:\n{logs}")
                raise RuntimeError(f"server exited early:\n{logs}")
            try:
                # /ready answers 503 while the models load; tests want a loaded model.
                if httpx.get(self.base_url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {STARTUP_TIMEOUT_S}s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
