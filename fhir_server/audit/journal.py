"""A local journal of queued AuditEvents, so that a killed server process loses none.

``append`` writes the event (with its id) as one line to the current segment
file in a single unbuffered ``write``: once it returns, the kernel holds the line
even if the process is killed the next moment (a power loss before the kernel
writes it out can still lose the last instants: there is no fsync per request,
by design). ``rotate`` starts a new segment, and a segment is deleted only after
every event in it was written to the database.

Each process holds an exclusive ``flock`` on its segments. At start-up, the
segments of the same database that no live process holds are *orphans* of a
killed one: the trail queues their events again. AuditEvents carry their ids
from the start, so an event written just before the kill is not written twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from fhir_server.core.fhirjson import dumps, loads_stored

log = logging.getLogger("fhir_server.audit")


class Journal:
    def __init__(self, directory: Path, database: str) -> None:
        self.directory = directory
        self.prefix = re.sub(r"[^A-Za-z0-9_-]", "_", database) + "."
        self._fd: int | None = None
        self._path: Path | None = None
        self._held: dict[Path, int] = {}  # segments this process holds (locked fds)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._start_segment()

    def _start_segment(self) -> None:
        path = self.directory / f"{self.prefix}{os.getpid()}.{uuid.uuid4().hex[:12]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path = fd, path
        self._held[path] = fd

    def append(self, event: dict[str, Any]) -> None:
        if self._fd is not None:
            os.write(self._fd, dumps(event) + b"\n")

    def rotate(self) -> None:
        """Later events go to a new segment; the current one waits for ``done``."""
        if self._fd is not None:
            self._start_segment()

    def done(self) -> None:
        """Every event appended before the last ``rotate`` is in the database: delete those
        segments (all held ones but the current)."""
        for path, fd in list(self._held.items()):
            if path == self._path:
                continue
            try:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
                del self._held[path]

    def size(self) -> int:
        """Bytes in the segments this process holds (events not yet known written)."""
        total = 0
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                total += os.fstat(fd).st_size
        return total

    def close(self, *, keep: bool) -> None:
        """At shutdown: delete every segment, or (``keep``: events are still unwritten)
        leave them for the next start to replay."""
        for path, fd in list(self._held.items()):
            try:
                if not keep:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        self._held.clear()
        self._fd = self._path = None

    def orphans(self) -> list[dict[str, Any]]:
        """The events of segments a killed process left (their segments are now held here
        and deleted with the next ``done``)."""
        events: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob(f"{self.prefix}*.jsonl")):
            if path in self._held:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process holds it
                continue
            self._held[path] = fd
            events.extend(_read(path))
        if events:
            log.warning("audit journal replay events=%d", len(events))
        return events


def _read(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            event = loads_stored(line)  # written by this server; checked again when stored
        except Exception:
            continue  # a line cut short by the kill: it was never acknowledged
        if isinstance(event, dict) and event.get("resourceType") == "AuditEvent":
            out.append(event)
    return out
