"""Structured logs: JSON lines for machines, readable lines for a terminal.

Every record may carry ``extra={"fields": {...}}``; both formats print those
fields (JSON as keys, text as ``key=value``). ``extra={"details": {...}}`` is
for JSON only, where the message already says it all for a reader. A last line of defence scrubs
anything shaped like an API key or a bearer token from every message.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["auto", "json", "text"]

# `sk-` keys (ours and OpenAI's) and bearer tokens; the prefix is kept so a
# reader can tell which kind of key it was.
_SECRET = re.compile(r"\b(sk-|Bearer\s+)[A-Za-z0-9_\-\.]{8,}")

QUIET_LIBRARIES = ("alembic.runtime.plugins",)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)


def fields_of(record: logging.LogRecord, attribute: str = "fields") -> dict[str, Any]:
    fields = getattr(record, attribute, None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(fields_of(record))
        entry.update(fields_of(record, "details"))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname.lower():<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{key}={value}" for key, value in fields_of(record).items())
        if extras:
            line += "  " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    if fmt != "auto":
        return fmt
    return "text" if stream.isatty() else "json"


def configure_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one handler on stderr."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if resolve_format(fmt, stream) == "json" else TextFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers propagate to ours; its access log is replaced by ezlink.access.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        # Whatever level an earlier uvicorn.Config gave it, ours applies.
        logger.setLevel(logging.NOTSET)
    logging.getLogger("uvicorn.access").disabled = True
    # Chatter at info that says nothing to an operator (alembic lists its plugins).
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )
