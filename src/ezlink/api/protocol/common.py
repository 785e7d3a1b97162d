"""What every family's wire format shares: the JSON body and small field checks."""

from __future__ import annotations

from typing import Any

import orjson

from ezlink.errors import InvalidRequestError


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON "
            "(UTF-8) with Content-Type: application/json."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("The JSON body of your request must be an object.")
    return data


def optional_str(data: dict[str, Any], name: str) -> str | None:
    """A string field that may be absent or null; 400 naming it for any other type."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"`{name}` must be a string.", param=name)
    return value


def short_repr(value: object) -> str:
    """A client's value, quoted in an error message, at most 40 characters."""
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
