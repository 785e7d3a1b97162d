"""Several `ezlink serve` processes at once (replicas on one database)."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from tests.support.server import ServerProcess


def stop_servers(servers: list[ServerProcess]) -> None:
    """SIGTERM all at once, then wait: the shutdowns overlap."""
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda server: server.stop(), servers))


def _start_or_none(server: ServerProcess) -> ServerProcess | None:
    try:
        return server.start()
    except RuntimeError:
        return None


def start_servers(count: int, master_key: str, env: Mapping[str, str]) -> list[ServerProcess]:
    """`count` servers started in parallel; all ready, or none left running."""
    servers = [ServerProcess(master_key=master_key, env=env) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        started = list(pool.map(_start_or_none, servers))
    if not all(started):
        stop_servers(servers)
        raise RuntimeError("a server did not start:\n" + "\n".join(s.logs() for s in servers))
    return servers
