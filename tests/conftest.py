"""Shared fixtures: one real server with the default model for the whole session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from ezlink.engine.cl100k import seed_tiktoken_cache
from tests.support.server import ServerProcess

# LangChain's client tokenizes with tiktoken in the test process too.
seed_tiktoken_cache()

# Servers started by tests keep their accounts database (SQLite) in a
# throw-away directory, never in the user's ~/.local/share/ezlink.
os.environ.setdefault("EZLINK_DATA_DIR", tempfile.mkdtemp(prefix="ezlink-test-data-"))

# Real PostgreSQL and Redis servers, started on demand (fixtures
# `postgres_server`, `database_url`, `redis_server`).
pytest_plugins = ["tests.support.postgres", "tests.support.redis"]

MASTER_KEY = "sk-test-master-0123456789abcdef"


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """The default model behind the master key."""
    with ServerProcess(master_key=MASTER_KEY) as process:
        yield process
