"""The repository on the embedded SQLite database (the default when MONGODB_URI is unset).

Tables (``database.py``): ``resources`` holds the current version of every
resource (``json`` NULL for a deletion), ``history`` every version, and one
index table per kind of search value holds the current versions' values.
A write is one SQLite transaction: the version check, the current row, the
history row, the index rows and the change's event (``events``, the outbox) commit
together or not at all, also across a crash (SQLite's own journal), so no staged
protocol is needed here. One process writes at a time, so events are numbered
(AUTOINCREMENT: never reused) in the order their commits become visible.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from fhir_server.observability import tracing
from fhir_server.search.query import EVERYTHING, Query, SortKey
from fhir_server.storage.locks import Locks
from fhir_server.storage.model import ChangeEvent, StoredVersion, action_of, now_ms
from fhir_server.storage.repository import (
    Current,
    EngineInfo,
    HistoryCursor,
    HistoryPage,
    HistoryPlan,
    PlannedWrite,
    Repository,
    TransactionConflict,
    VersionConflict,
    history_key,
)
from fhir_server.storage.sqlite.concepts import SqliteConcepts
from fhir_server.storage.sqlite.database import Database
from fhir_server.storage.sqlite.records import SqliteRecords
from fhir_server.storage.sqlite.rows import (
    Rows,
    delete_index,
    from_ms,
    index_rows,
    insert_index,
    insert_rows,
    ms,
)
from fhir_server.storage.sqlite.sql import (
    Sql,
    conditions,
    has_driver,
    order_by,
    probe,
    sorted_by_index,
    successor,
)

CHUNK = 500  # ids per statement (SQLite allows 32,766 parameters)


class _Conflict(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _all(c: sqlite3.Connection, *, text: str, params: dict[str, Any]) -> list[Any]:
    return c.execute(text, params).fetchall()


def _stored(type_: str, id_: str, row: Sequence[Any]) -> StoredVersion:
    v, ts, m, text = row
    return StoredVersion(type_=type_, id_=id_, version=v, last_updated=from_ms(ts), text=text,
                         method=m)


def _apply(c: sqlite3.Connection, w: PlannedWrite, ts: int, trace: str | None) -> None:
    """One write inside a transaction: check the version, move the current row, add the
    history row, replace the index rows, append the event (with ``trace``, the committing
    span's traceparent). Raises _Conflict when ``previous`` does not hold."""
    version = (w.previous or 0) + 1
    key = history_key(w.type_, w.id_, version)
    row = c.execute("SELECT rid, v, json IS NOT NULL FROM resources WHERE type = ? AND id = ?",
                    (w.type_, w.id_)).fetchone()
    if (row is None) != (w.previous is None) or (row is not None and row[1] != w.previous):
        raise _Conflict(key)
    live = int(w.text is not None) - (int(row[2]) if row is not None else 0)
    if live:  # the count of current resources per type, for unfiltered totals
        c.execute("INSERT INTO type_counts (type, live) VALUES (?, ?) "
                  "ON CONFLICT (type) DO UPDATE SET live = live + excluded.live", (w.type_, live))
    if row is None:
        rid = c.execute("INSERT INTO resources (type, id, v, ts, m, json) VALUES (?, ?, ?, ?, ?, ?)",
                        (w.type_, w.id_, version, ts, w.method, w.text)).lastrowid
        assert rid is not None
    else:
        rid = row[0]
        c.execute("UPDATE resources SET v = ?, ts = ?, m = ?, json = ? WHERE rid = ?",
                  (version, ts, w.method, w.text, rid))
        delete_index(c, rid)
        c.execute("UPDATE history SET until = ? WHERE key = ?",
                  (ts, history_key(w.type_, w.id_, w.previous or 0)))
    c.execute("INSERT INTO history (key, type, id, v, ts, m, json) VALUES (?, ?, ?, ?, ?, ?, ?)",
              (key, w.type_, w.id_, version, ts, w.method, w.text))
    if w.text is not None and w.index:
        insert_index(c, rid=rid, type_=w.type_, id_=w.id_, index=w.index)
    c.execute("INSERT INTO events (type, id, v, a, ts, tp) VALUES (?, ?, ?, ?, ?, ?)",
              (w.type_, w.id_, version,
               action_of(text=w.text, previous_live=row is not None and bool(row[2])), ts,
               trace))


class SqliteRepository(Repository):
    """Resources, history and search values in one SQLite file."""

    def __init__(self, *, path: Path, synchronous: str = "NORMAL") -> None:
        self.db = Database(path, synchronous=synchronous)
        self.engine = EngineInfo(name="sqlite", version=sqlite3.sqlite_version,
                                 transactions=True)
        self.records = SqliteRecords(self.db)
        self.locks = Locks(self.records)
        self.concepts: SqliteConcepts = SqliteConcepts(self.db)

    async def open(self) -> None:
        self.db.create_schema()
        self.concepts.create_schema()

    async def close(self) -> None:
        self.db.close()

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())

    # -- reads --------------------------------------------------------------------------

    async def current(self, *, type_: str, id_: str) -> StoredVersion | None:
        row = await self.db.read(lambda c: c.execute(
            "SELECT v, ts, m, json FROM resources WHERE type = ? AND id = ?",
            (type_, id_)).fetchone())
        return None if row is None else _stored(type_, id_, row)

    async def version(self, *, type_: str, id_: str, version: int) -> StoredVersion | None:
        row = await self.db.read(lambda c: c.execute(
            "SELECT v, ts, m, json FROM history WHERE key = ?",
            (history_key(type_, id_, version),)).fetchone())
        return None if row is None else _stored(type_, id_, row)

    async def types(self) -> list[str]:
        found = await self.db.read(lambda c: c.execute(
            "SELECT DISTINCT type FROM resources ORDER BY type").fetchall())
        return [row[0] for row in found]

    async def peek(self, *, type_: str, id_: str) -> Current | None:
        row = await self.db.read(lambda c: c.execute(
            "SELECT v, json IS NULL FROM resources WHERE type = ? AND id = ?",
            (type_, id_)).fetchone())
        return None if row is None else Current(version=row[0], deleted=bool(row[1]))

    async def search(self, *, type_: str, query: Query, sort: Sequence[SortKey],
                     limit: int) -> list[str]:
        if (len(sort) == 1 and sort[0].name not in ("_id", "_lastUpdated")
                and not has_driver(query)):
            return await self._search_in_sort_order(type_, query, sort[0], limit)
        sql = Sql()
        where = conditions(sql, type_, query, "r")
        text = (f"SELECT r.id FROM resources r WHERE {where}{order_by(sql, tuple(sort))} "
                f"LIMIT {sql.p(limit)}")
        found = await self.db.read(lambda c: c.execute(text, sql.params).fetchall())
        return [row[0] for row in found]

    async def _search_in_sort_order(self, type_: str, query: Query, key: SortKey,
                                    limit: int) -> list[str]:
        """A query no index narrows, sorted by one parameter: read in the order of the sort
        index and stop at ``limit``; rows without a value come first ascending, last
        descending (as MongoDB sorts a missing value)."""
        found: list[str] = []
        for with_value in ((True, False) if key.descending else (False, True)):
            if len(found) >= limit:
                break
            sql = Sql()
            text = sorted_by_index(sql, type_, query, key.name, descending=key.descending,
                                   with_value=with_value, limit=limit - len(found))
            found += [row[0] for row in await self.db.read(partial(_all, text=text,
                                                                   params=sql.params))]
        return found

    async def count(self, *, type_: str, query: Query) -> int:
        if query == EVERYTHING:
            found = await self.db.read(lambda c: c.execute(
                "SELECT live FROM type_counts WHERE type = ?", (type_,)).fetchone())
            return 0 if found is None else int(found[0])
        sql = Sql()
        text = f"SELECT count(*) FROM resources r WHERE {conditions(sql, type_, query, 'r')}"
        row = await self.db.read(lambda c: c.execute(text, sql.params).fetchone())
        return int(row[0])

    async def matches(self, *, type_: str, id_: str, query: Query) -> bool:
        sql = Sql()
        text = (f"SELECT 1 FROM resources r WHERE r.type = {sql.p(type_)} AND r.id = {sql.p(id_)} "
                f"AND r.json IS NOT NULL AND {probe(sql, query, 'r', type_)}")
        return await self.db.read(lambda c: c.execute(text, sql.params).fetchone()) is not None

    async def fetch(self, *, type_: str, ids: Sequence[str],
                    where: Query | None = None) -> list[StoredVersion]:
        found: dict[str, StoredVersion] = {}
        for start in range(0, len(ids), CHUNK):
            sql = Sql()
            text = (f"SELECT r.id, r.v, r.ts, r.m, r.json FROM resources r "
                    f"WHERE r.type = {sql.p(type_)} "
                    f"AND r.id IN ({sql.ps(list(ids[start:start + CHUNK]))}) "
                    f"AND r.json IS NOT NULL")
            if where is not None:
                text += f" AND {probe(sql, where, 'r', type_)}"
            rows = await self.db.read(partial(_all, text=text, params=sql.params))
            for row in rows:
                found[row[0]] = _stored(type_, row[0], row[1:])
        return [found[i] for i in ids if i in found]

    async def references(self, *, type_: str, ids: Sequence[str],
                         prefix: str = "") -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), CHUNK):
            sql = Sql()
            text = (f"SELECT r.id, f.key FROM resources r JOIN ix_rf f ON f.rid = r.rid "
                    f"WHERE r.type = {sql.p(type_)} "
                    f"AND r.id IN ({sql.ps(list(ids[start:start + CHUNK]))}) "
                    f"AND r.json IS NOT NULL")
            if prefix:
                text += f" AND f.key >= {sql.p(prefix)} AND f.key < {sql.p(successor(prefix))}"
            rows = await self.db.read(partial(_all, text=text, params=sql.params))
            for id_, ref in rows:
                out.setdefault(id_, []).append(ref)
        return out

    async def history(
        self,
        *,
        type_: str | None = None,
        id_: str | None = None,
        since: datetime | None = None,
        at: tuple[datetime, datetime] | None = None,
        count: int,
        cursor: HistoryCursor | None = None,
        exclude_types: frozenset[str] = frozenset(),
    ) -> HistoryPage:
        plan = HistoryPlan.of(type_=type_, id_=id_, since=since, at=at, count=count,
                              cursor=cursor, exclude_types=exclude_types)
        sql = Sql()
        conds = [f"ts <= {sql.p(plan.as_of)}"]
        if plan.type_ is not None:
            conds.append(f"type = {sql.p(plan.type_)}")
        elif plan.excluded:
            conds.append(f"type NOT IN ({sql.ps(plan.excluded)})")
        if plan.id_ is not None:
            conds.append(f"id = {sql.p(plan.id_)}")
        if plan.since is not None:
            conds.append(f"ts >= {sql.p(plan.since)}")
        if plan.at is not None:
            conds.append(f"ts < {sql.p(plan.at[1])} "
                         f"AND (until IS NULL OR until > {sql.p(plan.at[0])})")
        where = " AND ".join(conds)
        page_where = where
        if plan.after is not None:
            ts, key = plan.after
            page_where += (f" AND (ts < {sql.p(ts)} OR (ts = {sql.p(ts)} AND key < {sql.p(key)}))")

        def run(c: sqlite3.Connection) -> tuple[int, list[Any]]:
            total = c.execute(f"SELECT count(*) FROM history WHERE {where}", sql.params).fetchone()
            rows = c.execute(f"SELECT type, id, v, ts, m, json, key FROM history WHERE {page_where} "
                             f"ORDER BY ts DESC, key DESC LIMIT {int(plan.limit)}",
                             sql.params).fetchall()
            return int(total[0]), rows

        total, rows = await self.db.read(run)
        return plan.page(total=total, rows=[(_stored(r[0], r[1], r[2:6]), r[6]) for r in rows])

    # -- writes -------------------------------------------------------------------------

    async def write(self, *, type_: str, id_: str, previous: int | None, text: str | None,
                    index: Mapping[str, Any] | None, method: str,
                    ts: datetime | None = None) -> StoredVersion:
        ts = ts or now_ms()
        w = PlannedWrite(type_, id_, previous, text, index, method)
        trace = tracing.current_traceparent()
        try:
            await self.db.write(lambda c: _apply(c, w, ms(ts), trace))
        except _Conflict as conflict:
            raise VersionConflict(conflict.key) from None
        return StoredVersion(type_=type_, id_=id_, version=(previous or 0) + 1,
                             last_updated=ts, text=text, method=method)

    async def commit_transaction(self, writes: list[PlannedWrite], *, ts: datetime,
                                 side_effects: Sequence[PlannedWrite] = ()
                                 ) -> list[StoredVersion]:
        everything = [*writes, *side_effects]
        trace = tracing.current_traceparent()

        def run(c: sqlite3.Connection) -> None:
            for i, w in enumerate(everything):
                try:
                    _apply(c, w, ms(ts), trace)
                except _Conflict as conflict:
                    raise TransactionConflict(i, conflict.key) from None

        await self.db.write(run)
        return [StoredVersion(type_=w.type_, id_=w.id_, version=(w.previous or 0) + 1,
                              last_updated=ts, text=w.text, method=w.method) for w in writes]

    async def append_new(self, *, type_: str,
                         items: Sequence[tuple[str, str, Mapping[str, Any]]],
                         ts: datetime) -> int:
        at = ms(ts)

        def run(c: sqlite3.Connection) -> int:
            stored = 0
            rows: Rows = {}
            for id_, text, index in items:
                rid = c.execute("INSERT OR IGNORE INTO resources (type, id, v, ts, m, json) "
                                "VALUES (?, ?, 1, ?, 'POST', ?)", (type_, id_, at, text)).lastrowid
                if not c.execute("SELECT changes()").fetchone()[0]:
                    continue  # stored before
                assert rid is not None
                c.execute("INSERT INTO history (key, type, id, v, ts, m, json) "
                          "VALUES (?, ?, ?, 1, ?, 'POST', ?)",
                          (history_key(type_, id_, 1), type_, id_, at, text))
                index_rows(rows, rid=rid, type_=type_, id_=id_, index=index)
                stored += 1
            insert_rows(c, rows)
            if stored:
                c.execute("INSERT INTO type_counts (type, live) VALUES (?, ?) "
                          "ON CONFLICT (type) DO UPDATE SET live = live + excluded.live",
                          (type_, stored))
            return stored

        return await self.db.write(run)

    async def events(self, *, after: int, limit: int) -> list[ChangeEvent]:
        rows = await self.db.read(lambda c: c.execute(
            "SELECT n, type, id, v, a, ts, tp FROM events WHERE n > ? ORDER BY n LIMIT ?",
            (after, limit)).fetchall())
        return [ChangeEvent(number=n, type_=t, id_=i, version=v, action=a, at=from_ms(ts),
                            trace=tp)
                for n, t, i, v, a, ts, tp in rows]

    async def last_event(self) -> int:
        row = await self.db.read(lambda c: c.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone())
        return 0 if row is None else int(row[0])

    async def purge_events(self, *, before: datetime, upto: int) -> int:
        def run(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM events WHERE n <= ? AND ts < ?",
                             (upto, ms(before))).rowcount

        return await self.db.write(run)
