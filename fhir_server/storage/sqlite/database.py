"""The embedded SQLite database: one file, its schema, and how statements are run.

* WAL journal with ``synchronous=NORMAL``: a commit is durable once the WAL
  is synced at the next checkpoint; a crash of the process never loses or
  tears a committed transaction, a power loss can lose the last few
  (SQLite's documented trade-off, as PostgreSQL's ``synchronous_commit=off``).
  ``FHIR_SQLITE_SYNCHRONOUS=FULL`` syncs every commit.
* One connection per process, used from the event loop's thread. Point reads
  and writes take microseconds, less than a hop to a worker thread would.
  A write transaction is run start to end without yielding to the loop, so
  other tasks never see or join it half done.
* Several processes may share the file (``FHIR_WORKERS``, the operator CLI):
  a writer that finds the file locked by another process does not block the
  loop in SQLite's busy handler; it yields and tries again (``write``).
* Statements that may run long on a client's behalf (a value set's regex filter reads
  every concept of its system) run inside ``bounded``: SQLite interrupts them at the
  query deadline (``storage/deadline.py``), since until then they hold up the loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from fhir_server.storage import fence
from fhir_server.storage.deadline import QueryTimeout, check, current
from fhir_server.storage.private import make_private, private_dir
from fhir_server.storage.repository import DatabaseUnavailable

log = logging.getLogger("fhir_server.storage")

T = TypeVar("T")
SCHEMA_VERSION = 1
STRING_KINDS = ("tk", "tt", "ot", "st", "sx", "rf", "ri", "ur", "cp", "has")
BUSY_WAIT = 30.0  # seconds a statement waits for another process's write lock at most
PROGRESS_STEPS = 1000  # SQLite VM steps between two looks at a query's deadline

_STRING_TABLE = """
CREATE TABLE IF NOT EXISTS ix_{k} (
  rid INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
  PRIMARY KEY (rid, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_{k}_find ON ix_{k} (type, key);
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
  rid INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  v INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  m TEXT NOT NULL,
  json TEXT,
  UNIQUE (type, id));
CREATE INDEX IF NOT EXISTS resources_live ON resources (type, id) WHERE json IS NOT NULL;
CREATE INDEX IF NOT EXISTS resources_updated ON resources (type, ts, id) WHERE json IS NOT NULL;
CREATE TABLE IF NOT EXISTS type_counts (
  type TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
  key TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  v INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  m TEXT NOT NULL,
  json TEXT,
  until INTEGER);
CREATE INDEX IF NOT EXISTS history_system ON history (ts, key);
CREATE INDEX IF NOT EXISTS history_type ON history (type, ts, key);
CREATE INDEX IF NOT EXISTS history_resource ON history (type, id, v);
CREATE TABLE IF NOT EXISTS ix_dt (
  rid INTEGER NOT NULL, type TEXT NOT NULL, p TEXT NOT NULL, lo INTEGER NOT NULL,
  hi INTEGER NOT NULL, tier INTEGER NOT NULL, PRIMARY KEY (rid, p, lo, hi)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_dt_lo ON ix_dt (type, p, tier, lo, hi);
CREATE INDEX IF NOT EXISTS ix_dt_hi ON ix_dt (type, p, hi);
CREATE TABLE IF NOT EXISTS ix_nm (
  rid INTEGER NOT NULL, type TEXT NOT NULL, p TEXT NOT NULL, v REAL NOT NULL,
  PRIMARY KEY (rid, p, v)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_nm_find ON ix_nm (type, p, v);
CREATE TABLE IF NOT EXISTS ix_qt (
  rid INTEGER NOT NULL, type TEXT NOT NULL, p TEXT NOT NULL, v REAL NOT NULL,
  s TEXT, c TEXT, u TEXT);
CREATE INDEX IF NOT EXISTS ix_qt_rid ON ix_qt (rid, p);
CREATE INDEX IF NOT EXISTS ix_qt_find ON ix_qt (type, p, v);
CREATE TABLE IF NOT EXISTS ix_cr (
  rid INTEGER NOT NULL, type TEXT NOT NULL, p TEXT NOT NULL, k TEXT NOT NULL,
  lo INTEGER, hi INTEGER, v REAL, s TEXT, c TEXT, u TEXT);
CREATE INDEX IF NOT EXISTS ix_cr_rid ON ix_cr (rid, p);
CREATE INDEX IF NOT EXISTS ix_cr_find ON ix_cr (type, p, k);
CREATE TABLE IF NOT EXISTS ix_so (
  rid INTEGER NOT NULL, type TEXT NOT NULL, p TEXT NOT NULL, value ANY, id TEXT NOT NULL,
  PRIMARY KEY (rid, p)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_so_order ON ix_so (type, p, value, id);
CREATE TABLE IF NOT EXISTS events (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL, id TEXT NOT NULL, v INTEGER NOT NULL, a TEXT NOT NULL,
  ts INTEGER NOT NULL, tp TEXT);
CREATE TABLE IF NOT EXISTS records (
  kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, exp REAL,
  PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (kind, exp);
""" + "".join(_STRING_TABLE.format(k=k) for k in STRING_KINDS)

# Columns added since a table was first created: (table, column, declaration). A file
# made before them gets them at open (``create_schema``). Each is nullable, so a server of
# the same schema version without it still reads and writes the file: the version moves
# only for a change an older server could not live with.
ADDED_COLUMNS = (
    ("events", "tp", "TEXT"),  # the committing span's W3C traceparent (tracing on)
)

INDEX_TABLES = (*[f"ix_{k}" for k in STRING_KINDS], "ix_dt", "ix_nm", "ix_qt", "ix_cr", "ix_so")


def _busy(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


class Database:
    """The connection to one SQLite file, and the two ways of running statements."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        # The file holds health data and the token signing key: this user's alone
        # (``storage/private.py``). SQLite gives the -wal and -shm files the file's mode.
        private_dir(path.parent)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                    cached_statements=512)
        for made in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
            if made.exists():
                make_private(made, 0o600)
        # At start-up (several processes may open a new file at once) wait for the lock in
        # SQLite's handler; once serving, never block the loop in it (``write`` yields instead).
        self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_WAIT * 1000)}")
        self._starting("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages
        self.conn.execute("PRAGMA mmap_size = 268435456")
        self._writing = asyncio.Lock()

    def _starting(self, statement: str) -> None:
        """A start-up statement, retried while another process holds the file: switching to
        WAL takes the lock without SQLite's busy handler when a reader holds it (SQLite gives
        up at once rather than risk a deadlock), as when two workers open a new file."""
        deadline = time.monotonic() + BUSY_WAIT
        attempt = 0
        while True:
            try:
                self.conn.execute(statement)
                return
            except sqlite3.OperationalError as error:
                if not _busy(error) or time.monotonic() > deadline:
                    raise
            attempt += 1
            time.sleep(_pause(attempt))

    def create_schema(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer version of this server "
                               f"(schema {version}; this one knows {SCHEMA_VERSION})")
        self.conn.executescript("BEGIN IMMEDIATE;" + SCHEMA)  # left open: one transaction
        try:
            for table, column, declaration in ADDED_COLUMNS:
                have = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("PRAGMA busy_timeout = 0")

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA optimize")
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
            # Another process is writing (a worker still serving): it, or the next start,
            # refreshes the planner statistics instead.
        finally:
            self.conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read (autocommit statements); retried while another process recovers the
        WAL, the only time a reader finds the file busy."""
        deadline = asyncio.get_running_loop().time() + BUSY_WAIT
        attempt = 0
        while True:
            try:
                return fn(self.conn)
            except sqlite3.OperationalError as error:
                if not _busy(error):
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise DatabaseUnavailable(str(error)) from None
            attempt += 1
            await asyncio.sleep(_pause(attempt))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one write transaction (all or nothing); an exception from ``fn``
        rolls it back. Waits (without blocking the loop) while another process writes. Under
        a lease, the transaction first checks that the lease is still this holder's."""
        fences = fence.held()
        async with self._writing:
            deadline = asyncio.get_running_loop().time() + BUSY_WAIT
            attempt = 0
            while True:
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as error:
                    if not _busy(error):
                        raise
                    if asyncio.get_running_loop().time() > deadline:
                        raise DatabaseUnavailable(str(error)) from None
                attempt += 1
                await asyncio.sleep(_pause(attempt))
            try:
                for held in fences:
                    _check_fence(self.conn, held)
                result = fn(self.conn)
                self.conn.execute("COMMIT")
                return result
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise


@contextmanager
def bounded(conn: sqlite3.Connection) -> Iterator[None]:
    """The statements run inside stop at the query deadline, when one is set
    (``storage/deadline.py``): SQLite interrupts them, and rolls back an interrupted write
    transaction."""
    until = current()
    if until is None:
        yield
        return
    check()  # QueryTimeout when it has already passed
    conn.set_progress_handler(lambda: int(time.monotonic() > until), PROGRESS_STEPS)
    try:
        yield
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error):
            raise QueryTimeout from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _check_fence(conn: sqlite3.Connection, held: fence.Fence) -> None:
    row = conn.execute("SELECT json_extract(doc, '$.owner') FROM records WHERE kind = ? AND id = ?",
                       (fence.LOCKS, held.name)).fetchone()
    if row is None or row[0] != held.owner:
        raise fence.LeaseLost(held.name)


def _pause(attempt: int) -> float:
    """Jittered backoff between tries: 1 ms growing to 50 ms."""
    return random.uniform(0.0005, min(0.05, 0.001 * 2 ** min(attempt, 6)))

