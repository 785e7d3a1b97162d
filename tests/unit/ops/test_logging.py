"""Log lines: JSON for machines, text for people, and never a key's secret."""

from __future__ import annotations

import io
import logging

import orjson

from ezlink.ops.logging import JsonFormatter, TextFormatter, configure_logging, resolve_format


def record(
    message: str, *args: object, fields: dict[str, object] | None = None
) -> logging.LogRecord:
    made = logging.LogRecord("ezlink.access", logging.INFO, __file__, 1, message, args, None)
    if fields is not None:
        made.fields = fields
    return made


def test_json_line_carries_message_level_logger_and_fields() -> None:
    line = JsonFormatter().format(
        record("POST %s %d", "/v1/embeddings", 200, fields={"request_id": "r1", "tokens": 7})
    )
    entry = orjson.loads(line)
    assert entry["message"] == "POST /v1/embeddings 200"
    assert entry["level"] == "info"
    assert entry["logger"] == "ezlink.access"
    assert entry["request_id"] == "r1"
    assert entry["tokens"] == 7
    assert entry["time"].endswith("Z")
    assert "\n" not in line


def test_text_line_shows_fields_as_key_value() -> None:
    line = TextFormatter().format(record("ready", fields={"model": "m", "inputs": 2}))
    assert "ezlink.access: ready" in line
    assert "model=m inputs=2" in line


def test_secret_shaped_strings_are_redacted_in_both_formats() -> None:
    secret = "sk-live-abcdefghijklmnop0123456789"
    made = record("auth header was Bearer %s and key %s", "tok_abcdefghijkl", secret)
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(made)
        assert secret not in line
        assert "tok_abcdefghijkl" not in line
        assert "sk-[redacted]" in line


def test_auto_format_is_json_when_not_a_terminal() -> None:
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_configure_logging_sends_every_logger_through_one_json_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json", stream)
        logging.getLogger("uvicorn.error").info("Started server process")
        logging.getLogger("ezlink.test").debug("not at info level")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line)["message"] for line in lines] == ["Started server process"]


def test_details_are_for_json_only() -> None:
    made = record("ezlink serving on http://x", fields={"port": 1})
    made.details = {"models": ["m"]}
    assert orjson.loads(JsonFormatter().format(made))["models"] == ["m"]
    assert "models" not in TextFormatter().format(made)
