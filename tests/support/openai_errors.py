"""What every error response must look like: OpenAI's error body, never a traceback."""

from __future__ import annotations

from typing import Any

import httpx

ERROR_FIELDS = {"message", "type", "param", "code"}
UNSET: Any = object()


def assert_openai_error(
    response: httpx.Response, status: int, param: str | None = UNSET, code: str | None = UNSET
) -> dict[str, Any]:
    """Check the status and the exact OpenAI error shape; return the `error` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if param is not UNSET:
        assert error["param"] == param, error
    if code is not UNSET:
        assert error["code"] == code, error
    return error
