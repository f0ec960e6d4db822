"""The durable, append-only event log of a server's state directory.

Each acknowledged ``POST /events`` is one line ``<crc32> <json>\\n`` with a
sequence number, written and ``fsync``'ed before the answer. The log is a
series of segments ``events-<first seq>.log``; a snapshot starts a new segment
and, once the snapshot is committed, the segments it covers are deleted. On
start every segment is read in order and the events after the snapshot are
replayed. A torn last line (the process died inside a write, so the event was
never acknowledged) is cut off; any other damage is a :class:`dmf.StoreError`.
"""

from __future__ import annotations

import itertools
import json
import os
import zlib
from typing import Any

import dmf

__all__ = ["EventLog"]

_PREFIX, _SUFFIX = "events-", ".log"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(event: dict[str, Any]) -> bytes:
    body = json.dumps(event, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode(line: bytes) -> dict[str, Any] | None:
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        event = json.loads(body)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("seq"), int) else None


class EventLog:
    """Append-only, fsync'ed event segments in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.fd: int | None = None
        self.seq = 0

    def segments(self) -> list[tuple[int, str]]:
        out = []
        for name in os.listdir(self.directory):
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                try:
                    first = int(name[len(_PREFIX) : -len(_SUFFIX)])
                except ValueError:
                    continue
                out.append((first, os.path.join(self.directory, name)))
        return sorted(out)

    def replay(self, after: int) -> list[dict[str, Any]]:
        """Events with ``seq > after``, in order; opens the log for appending."""
        events: list[dict[str, Any]] = []
        segments = self.segments()
        last = after
        for n, (_, path) in enumerate(segments):
            with open(path, "rb") as f:
                data = f.read()
            offset = 0
            for line in data.splitlines(keepends=True):
                event = _decode(line)
                if event is None:
                    if n == len(segments) - 1 and offset + len(line) == len(data):
                        with open(path, "r+b") as f:  # a torn, never acknowledged write
                            f.truncate(offset)
                            os.fsync(f.fileno())
                        break
                    raise dmf.StoreError(
                        f"event log {path} is damaged at byte {offset}: the line is not a "
                        "complete, checksummed event"
                    )
                offset += len(line)
                seq = event["seq"]
                if seq <= after:
                    last = max(last, seq)
                    continue
                if seq != last + 1:
                    raise dmf.StoreError(
                        f"event log {path} jumps from event {last} to {seq}: events are missing"
                    )
                last = seq
                events.append(event)
        self.seq = last
        self._open(segments[-1][1] if segments else self._path(last + 1))
        return events

    def _path(self, first: int) -> str:
        return os.path.join(self.directory, f"{_PREFIX}{first:012d}{_SUFFIX}")

    def _open(self, path: str) -> None:
        new = not os.path.exists(path)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if new:
            _fsync_dir(self.directory)

    def append(self, event: dict[str, Any]) -> int:
        """Write ``event`` with the next sequence number and fsync it; returns the number."""
        assert self.fd is not None, "replay() opens the log"
        seq = self.seq + 1
        line = _encode({"seq": seq, **event})
        os.write(self.fd, line)
        os.fsync(self.fd)
        self.seq = seq
        return seq

    def rotate(self) -> int:
        """Start a new segment; returns the last sequence number of the old ones."""
        if self.fd is not None:
            os.close(self.fd)
        self._open(self._path(self.seq + 1))
        return self.seq

    def drop_through(self, seq: int) -> None:
        """Delete segments holding only events ``<= seq`` (a committed snapshot covers them)."""
        segments = self.segments()
        for (_, path), (nxt, _) in itertools.pairwise(segments):
            if nxt <= seq + 1:
                os.remove(path)
        _fsync_dir(self.directory)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
