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


def insert_index(conn: sqlite3.Connection, *, rid: int, type_: str, id_: str,
                 index: Mapping[str, Any]) -> None:
    for kind in STRING_KINDS:
        keys = index.get(kind)
        if keys:
            conn.executemany(f"INSERT OR IGNORE INTO ix_{kind} (rid, type, key) VALUES (?, ?, ?)",
                             [(rid, type_, k) for k in keys])
    if index.get("dt"):
        rows = [(rid, type_, e["p"], ms(e["lo"]), ms(e["hi"])) for e in index["dt"]]
        conn.executemany("INSERT OR IGNORE INTO ix_dt (rid, type, p, lo, hi, tier) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [(*r, tier(r[3], r[4])) for r in rows])
    if index.get("nm"):
        conn.executemany("INSERT OR IGNORE INTO ix_nm (rid, type, p, v) VALUES (?, ?, ?, ?)",
                         [(rid, type_, e["p"], e["v"]) for e in index["nm"]])
    if index.get("qt"):
        conn.executemany(
            "INSERT INTO ix_qt (rid, type, p, v, s, c, u) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(rid, type_, e["p"], e["v"], e.get("s"), e.get("c"), e.get("u"))
             for e in index["qt"]])
    if index.get("cr"):
        conn.executemany(
            "INSERT INTO ix_cr (rid, type, p, k, lo, hi, v, s, c, u) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(rid, type_, e["p"], e["k"], _opt_ms(e.get("lo")), _opt_ms(e.get("hi")),
              e.get("v"), e.get("s"), e.get("c"), e.get("u")) for e in index["cr"]])
    if index.get("so"):
        conn.executemany("INSERT INTO ix_so (rid, type, p, value, id) VALUES (?, ?, ?, ?, ?)",
                         [(rid, type_, p, sql_value(v), id_) for p, v in index["so"].items()])


def _opt_ms(value: datetime | None) -> int | None:
    return None if value is None else ms(value)
