"""Stored search values (``ix``, see ``search/extract.py``) as rows of the index tables.

One table per kind of search value: the string kinds hold ``(rid, type, key)``,
the range kinds their fields. Instants are stored as milliseconds since the
epoch (the precision every engine keeps), so ranges compare as integers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.storage.sqlite.database import INDEX_TABLES, STRING_KINDS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000
# Date ranges are kept in tiers by their span, so that "overlaps [a, b]" can be read from
# an index as "lo within [a - span, b]" per tier: up to a day, up to a leap year, longer.
TIER_SPANS = (DAY_MS, 366 * DAY_MS)


def tier(lo: int, hi: int) -> int:
    span = hi - lo
    return next((i for i, most in enumerate(TIER_SPANS) if span <= most), len(TIER_SPANS))


def ms(ts: datetime) -> int:
    """Milliseconds since the epoch, rounded down (as BSON dates keep instants)."""
    return (ts - EPOCH) // _MS


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def sql_value(value: Any) -> Any:
    """A query or sort value as stored: instants as milliseconds."""
    return ms(value) if isinstance(value, datetime) else value


def delete_index(conn: sqlite3.Connection, rid: int) -> None:
    for table in INDEX_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE rid = ?", (rid,))


_INSERTS = {
    **{f"ix_{k}": f"INSERT OR IGNORE INTO ix_{k} (rid, type, key) VALUES (?, ?, ?)"
       for k in STRING_KINDS},
    "ix_dt": "INSERT OR IGNORE INTO ix_dt (rid, type, p, lo, hi, tier) VALUES (?, ?, ?, ?, ?, ?)",
    "ix_nm": "INSERT OR IGNORE INTO ix_nm (rid, type, p, v) VALUES (?, ?, ?, ?)",
    "ix_qt": "INSERT INTO ix_qt (rid, type, p, v, s, c, u) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "ix_cr": "INSERT INTO ix_cr (rid, type, p, k, lo, hi, v, s, c, u) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "ix_so": "INSERT INTO ix_so (rid, type, p, value, id) VALUES (?, ?, ?, ?, ?)",
}

Rows = dict[str, list[tuple[Any, ...]]]


def index_rows(rows: Rows, *, rid: int, type_: str, id_: str, index: Mapping[str, Any]) -> None:
    """Add the rows of one resource's search values to ``rows`` (per index table)."""
    for kind in STRING_KINDS:
        for k in index.get(kind) or ():
            rows.setdefault(f"ix_{kind}", []).append((rid, type_, k))
    for e in index.get("dt") or ():
        lo, hi = ms(e["lo"]), ms(e["hi"])
        rows.setdefault("ix_dt", []).append((rid, type_, e["p"], lo, hi, tier(lo, hi)))
    for e in index.get("nm") or ():
        rows.setdefault("ix_nm", []).append((rid, type_, e["p"], e["v"]))
    for e in index.get("qt") or ():
        rows.setdefault("ix_qt", []).append((rid, type_, e["p"], e["v"], e.get("s"), e.get("c"),
                                             e.get("u")))
    for e in index.get("cr") or ():
        rows.setdefault("ix_cr", []).append((
            rid, type_, e["p"], e["k"], _opt_ms(e.get("lo")), _opt_ms(e.get("hi")), e.get("v"),
            e.get("s"), e.get("c"), e.get("u")))
    for p, v in (index.get("so") or {}).items():
        rows.setdefault("ix_so", []).append((rid, type_, p, sql_value(v), id_))


def insert_rows(conn: sqlite3.Connection, rows: Rows) -> None:
    for table, values in rows.items():
        conn.executemany(_INSERTS[table], values)


def insert_index(conn: sqlite3.Connection, *, rid: int, type_: str, id_: str,
                 index: Mapping[str, Any]) -> None:
    rows: Rows = {}
    index_rows(rows, rid=rid, type_=type_, id_=id_, index=index)
    insert_rows(conn, rows)


def _opt_ms(value: datetime | None) -> int | None:
    return None if value is None else ms(value)
