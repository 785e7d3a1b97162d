"""A local append-only journal of usage events, so that `kill -9` loses none.

Usage rows are written to the database in batches (usage.py); until a batch
commits, its events live only in memory. Each event is therefore first
appended, as one JSON line, to this process's journal segment (one
`write()` on an O_APPEND file: it reaches the kernel's page cache, which
outlives the process; no fsync, so a power cut may still lose the last
ones). A flush rotates to a new segment and deletes the old ones once the
batch holding their events committed.

Replicas sharing a disk each write their own segments, and hold an
exclusive `flock` on them while alive. At start, and at every sweep, a
process replays the segments whose lock it can take (their writer died):
their events are written with `write_usage`, which skips event ids already
stored, so a segment replayed twice (or whose batch did commit) counts once.
The directory is per database, so tests and tools on other databases never
replay into the wrong one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ezlink.accounts.store.repository import UsageEvent

logger = logging.getLogger(__name__)
SUFFIX = ".jsonl"


def journal_dir(base: Path, database_url: str) -> Path:
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return base / "usage-journal" / digest


# The event's fields, read once: dataclasses.asdict deep-copies every value
# and cost 0.4 ms a request (cProfile of the chat relay), on every request.
EVENT_FIELDS = tuple(field.name for field in dataclasses.fields(UsageEvent))


def encode(event: UsageEvent) -> bytes:
    data = {name: getattr(event, name) for name in EVENT_FIELDS}
    data["created_at"] = event.created_at.isoformat()
    return orjson.dumps(data) + b"\n"


def decode(line: bytes) -> UsageEvent:
    data: dict[str, Any] = json.loads(line)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return UsageEvent(**data)


class Segment:
    """One open, locked journal file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Locked under a name no replayer looks for, then renamed: a replayer
        # never sees an unlocked segment of a live writer.
        hidden = path.with_name("." + path.name + ".new")
        self.fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, path)
        self.events = 0

    def append(self, data: bytes) -> None:
        os.write(self.fd, data)
        self.events += 1

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)


class UsageJournal:
    """This process's segments in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._serial = 0
        self._current = self._open()
        self._closed: list[Segment] = []

    def _open(self) -> Segment:
        self._serial += 1
        return Segment(self.directory / f"{self._name}-{self._serial:08d}{SUFFIX}")

    def append(self, event: UsageEvent) -> None:
        self._current.append(encode(event))

    def rotate(self) -> int:
        """Start a new segment (the events so far are about to be written);
        a mark to pass to `committed` once they are."""
        if self._current.events:
            self._closed.append(self._current)
            self._current = self._open()
        return len(self._closed)

    def committed(self, mark: int) -> None:
        """Every event of the segments before `mark` is stored: drop them."""
        done, self._closed = self._closed[:mark], self._closed[mark:]
        for segment in done:
            segment.discard()

    def close(self) -> None:
        """At a clean stop, after the final flush wrote everything."""
        self.committed(len(self._closed))
        if self._current.events == 0:
            self._current.discard()
        else:
            os.close(self._current.fd)

    def orphans(self) -> list[tuple[Path, int]]:
        """Segments of dead writers, each opened and locked: (path, fd)."""
        mine = {segment.path for segment in [*self._closed, self._current]}
        found = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its writer is alive
                continue
            found.append((path, fd))
        return found


def read_segment(fd: int) -> list[UsageEvent]:
    """The events of a segment; a torn last line (the writer died mid-write) is skipped."""
    with os.fdopen(os.dup(fd), "rb") as file:
        events = []
        for line in file:
            try:
                events.append(decode(line))
            except (ValueError, TypeError, KeyError):
                logger.warning("skipping a torn usage journal line")
        return events
