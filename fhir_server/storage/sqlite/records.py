"""Records (``storage/records.py``) in the ``records`` table: one JSON document per kind and id.

Each operation is one SQLite transaction, so it is atomic across every process
that shares the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.storage.records import Doc, Records
from fhir_server.storage.sqlite.database import Database


def _exp(doc: Mapping[str, Any]) -> float | None:
    exp = doc.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _load(text: str) -> Doc:
    doc: Doc = orjson.loads(text)
    return doc


class SqliteRecords(Records):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, *, kind: str, doc: Doc) -> bool:
        text = orjson.dumps(doc).decode()

        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute("INSERT OR IGNORE INTO records (kind, id, doc, exp) VALUES (?, ?, ?, ?)",
                            (kind, str(doc["_id"]), text, _exp(doc)))
            return cur.rowcount == 1

        return await self.db.write(run)

    async def get(self, *, kind: str, id_: str) -> Doc | None:
        row = await self.db.read(lambda c: c.execute(
            "SELECT doc FROM records WHERE kind = ? AND id = ?", (kind, id_)).fetchone())
        return None if row is None else _load(row[0])

    async def delete(self, *, kind: str, id_: str, expect: Mapping[str, Any] | None = None
                     ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if expect:
                row = c.execute("SELECT doc FROM records WHERE kind = ? AND id = ?",
                                (kind, id_)).fetchone()
                if row is None:
                    return False
                doc = _load(row[0])
                if any(doc.get(k) != v for k, v in expect.items()):
                    return False
            cur = c.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, id_))
            return cur.rowcount == 1

        return await self.db.write(run)

    async def set_fields(self, *, kind: str, id_: str, fields: Doc,
                         expect: Mapping[str, Any] | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT doc FROM records WHERE kind = ? AND id = ?",
                            (kind, id_)).fetchone()
            if row is None:
                return False
            doc = _load(row[0])
            if expect and any(doc.get(k) != v for k, v in expect.items()):
                return False
            doc = {**doc, **fields}
            c.execute("UPDATE records SET doc = ?, exp = ? WHERE kind = ? AND id = ?",
                      (orjson.dumps(doc).decode(), _exp(doc), kind, id_))
            return True

        return await self.db.write(run)

    async def increment(self, *, kind: str, id_: str, field: str, on_insert: Doc,
                        by: int = 1) -> Doc:
        def run(c: sqlite3.Connection) -> Doc:
            row = c.execute("SELECT doc FROM records WHERE kind = ? AND id = ?",
                            (kind, id_)).fetchone()
            if row is None:
                doc = {"_id": id_, **on_insert, field: by}
                c.execute("INSERT INTO records (kind, id, doc, exp) VALUES (?, ?, ?, ?)",
                          (kind, id_, orjson.dumps(doc).decode(), _exp(doc)))
            else:
                doc = _load(row[0])
                doc[field] = int(doc.get(field, 0)) + by
                c.execute("UPDATE records SET doc = ? WHERE kind = ? AND id = ?",
                          (orjson.dumps(doc).decode(), kind, id_))
            return doc

        return await self.db.write(run)

    async def all(self, *, kind: str) -> list[Doc]:
        found = await self.db.read(lambda c: c.execute(
            "SELECT doc FROM records WHERE kind = ?", (kind,)).fetchall())
        return [_load(text) for (text,) in found]

    async def purge(self, *, kind: str, before: float) -> int:
        def run(c: sqlite3.Connection) -> int:
            return c.execute("DELETE FROM records WHERE kind = ? AND exp < ?",
                             (kind, before)).rowcount

        return await self.db.write(run)
