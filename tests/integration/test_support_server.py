"""The test harness itself: a server whose port was taken before it bound starts elsewhere."""

from __future__ import annotations

import socket

import httpx

from tests.conftest import MASTER_KEY
from tests.support.server import ServerProcess


def test_a_server_whose_port_was_taken_starts_on_another_port() -> None:
    server = ServerProcess(master_key=MASTER_KEY)
    taken = server.port
    # What another process does between free_port() and the server's bind.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with server:
            assert server.port != taken
            assert httpx.get(server.base_url + "/ready", timeout=10).status_code == 200
