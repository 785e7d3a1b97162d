"""What a test does when a real service it needs cannot be started."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(service: str, why: str) -> NoReturn:
    """Fail under CI (the service must be there), skip on a developer's machine."""
    message = f"{service} is not available: {why}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
