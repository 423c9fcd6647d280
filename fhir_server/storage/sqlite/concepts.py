"""The concept store (``storage/concepts.py``) in the SQLite file.

* ``code_systems(url, version, gen, ...)``: the stored system versions and the
  generation each serves; ``concept_builds`` lists generations being written.
* ``concepts(gen, code, seq, display, active, abstract, data)``: one row per
  concept, ``seq`` its place in the code system's order.
* ``concept_closure(gen, ancestor, code)``: every (ancestor, descendant) pair,
  each concept also with itself, so ``is-a`` and ``:below`` read one index range
  and ``:above`` the other index.
* ``concept_props(gen, prop, code)``: ``name|value`` keys; ``concept_words(gen,
  word, code)``: the words a text filter matches by prefix (a key range); the
  rarest word of a filter is read from it, the others are checked in the row's
  own ``words`` (`` word1 word2 ...``).
* ``code_sets(setkey, n)`` and ``code_set_members(setkey, sc)``: code sets
  (``system|code``) that searches join on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from fhir_server.storage.concepts import (
    Above,
    Active,
    AllOf,
    AnyOf,
    Below,
    Codes,
    ConceptRow,
    Concepts,
    Everything,
    HasProp,
    Not,
    Part,
    Props,
    Regex,
    Select,
    SystemVersion,
    Words,
    concept_from,
)
from fhir_server.storage.patterns import matches
from fhir_server.storage.sqlite.database import BUSY_WAIT, Database, bounded
from fhir_server.storage.sqlite.sql import Sql, successor

CHUNK = 2000  # concepts per write transaction while building
RARITY_CAP = 5000  # concepts counted per word when choosing which word of a filter to read

SCHEMA = """
CREATE TABLE IF NOT EXISTS code_systems (
  url TEXT NOT NULL, version TEXT NOT NULL, gen TEXT NOT NULL, source TEXT NOT NULL,
  content TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (url, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concept_builds (
  gen TEXT PRIMARY KEY, url TEXT NOT NULL, version TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concepts (
  gen TEXT NOT NULL, code TEXT NOT NULL, seq INTEGER NOT NULL, display TEXT,
  active INTEGER NOT NULL, abstract INTEGER NOT NULL, data TEXT NOT NULL, words TEXT NOT NULL,
  PRIMARY KEY (gen, code)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS concepts_order ON concepts (gen, seq);
CREATE TABLE IF NOT EXISTS concept_closure (
  gen TEXT NOT NULL, ancestor TEXT NOT NULL, code TEXT NOT NULL,
  PRIMARY KEY (gen, ancestor, code)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS concept_closure_up ON concept_closure (gen, code, ancestor);
CREATE TABLE IF NOT EXISTS concept_props (
  gen TEXT NOT NULL, prop TEXT NOT NULL, code TEXT NOT NULL,
  PRIMARY KEY (gen, prop, code)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS concept_props_code ON concept_props (gen, code, prop);
CREATE TABLE IF NOT EXISTS concept_words (
  gen TEXT NOT NULL, word TEXT NOT NULL, code TEXT NOT NULL,
  PRIMARY KEY (gen, word, code)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS code_sets (setkey TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS code_set_members (
  setkey TEXT NOT NULL, sc TEXT NOT NULL, PRIMARY KEY (setkey, sc)) WITHOUT ROWID;
"""
GEN_TABLES = ("concepts", "concept_closure", "concept_props", "concept_words")


def _regex(pattern: str, value: str | None) -> int:
    return int(matches(pattern, value))


def _system(row: Sequence[Any]) -> SystemVersion:
    url, version, gen, source, content, count = row
    return SystemVersion(url=url, version=version, gen=gen, source=source, content=content,
                         count=count)


def _concept(row: Sequence[Any]) -> ConceptRow:
    code, display, active, abstract, data = row
    return concept_from(code, display, bool(active), bool(abstract), orjson.loads(data))


def _conjuncts(where: Select) -> list[Select]:
    """The ANDed conditions, a text filter's words each on its own."""
    out: list[Select] = []
    for w in where.parts if isinstance(where, AllOf) else (where,):
        if isinstance(w, AllOf):
            out += _conjuncts(w)
        elif isinstance(w, Words):
            out += [Words((prefix,)) for prefix in w.prefixes]
        else:
            out.append(w)
    return out


def _rank(where: Select) -> tuple[int, int] | None:
    """How well a condition drives (lower first); None when it cannot."""
    if isinstance(where, Codes):
        return (0, 0)
    if isinstance(where, Below | Above | Props):
        return (1, 0)
    if isinstance(where, Words) and where.prefixes:
        return (2, 0)  # the first: SqliteConcepts._rarest_first puts the rarest word first
    return None


def _driver(sql: Sql, where: Select, g: str) -> str:
    """SELECT of the codes satisfying a driving condition, from one index range."""
    if isinstance(where, Below):
        out = f"SELECT code FROM concept_closure WHERE gen = {g} AND ancestor = {sql.p(where.code)}"
        return out if where.itself else f"{out} AND code != {sql.p(where.code)}"
    if isinstance(where, Above):
        return (f"SELECT ancestor AS code FROM concept_closure WHERE gen = {g} "
                f"AND code = {sql.p(where.code)}")
    if isinstance(where, Props):
        keys = [f"{where.name}|{v}" for v in where.values]
        return f"SELECT code FROM concept_props WHERE gen = {g} AND prop IN ({sql.ps(keys)})"
    assert isinstance(where, Words)
    w = where.prefixes[0]
    return (f"SELECT code FROM concept_words WHERE gen = {g} "
            f"AND word >= {sql.p(w)} AND word < {sql.p(successor(w))}")


def condition(sql: Sql, where: Select, g: str) -> str:
    """A test of the concept row ``c`` (each an indexed probe by its code)."""
    if isinstance(where, Everything):
        return "1"
    if isinstance(where, Codes):
        return f"c.code IN ({sql.ps(where.codes)})" if where.codes else "0"
    if isinstance(where, Below):
        out = (f"EXISTS (SELECT 1 FROM concept_closure WHERE gen = {g} "
               f"AND ancestor = {sql.p(where.code)} AND code = c.code)")
        return out if where.itself else f"({out} AND c.code != {sql.p(where.code)})"
    if isinstance(where, Above):
        return (f"EXISTS (SELECT 1 FROM concept_closure WHERE gen = {g} "
                f"AND code = {sql.p(where.code)} AND ancestor = c.code)")
    if isinstance(where, Props):
        keys = [f"{where.name}|{v}" for v in where.values]
        return (f"EXISTS (SELECT 1 FROM concept_props WHERE gen = {g} AND prop IN ({sql.ps(keys)}) "
                f"AND code = c.code)")
    if isinstance(where, HasProp | Regex) and not (isinstance(where, Regex)
                                                   and where.field in ("code", "display")):
        low = f"{where.name if isinstance(where, HasProp) else where.field}|"
        test = "" if isinstance(where, HasProp) else \
            f" AND fhir_regex({sql.p(where.pattern)}, substr(prop, {len(low) + 1}))"
        return (f"EXISTS (SELECT 1 FROM concept_props WHERE gen = {g} AND code = c.code "
                f"AND prop >= {sql.p(low)} AND prop < {sql.p(successor(low))}{test})")
    if isinstance(where, Regex):
        return f"fhir_regex({sql.p(where.pattern)}, c.{where.field})"
    if isinstance(where, Words):
        parts = [f"instr(c.words, {sql.p(' ' + w)}) > 0" for w in where.prefixes]
        return "(" + " AND ".join(parts) + ")" if parts else "1"
    if isinstance(where, Active):
        return "c.active = 1"
    if isinstance(where, Not):
        return f"NOT ({condition(sql, where.part, g)})"
    if isinstance(where, AllOf):
        return "(" + " AND ".join(condition(sql, p, g) for p in where.parts) + ")" \
            if where.parts else "1"
    if isinstance(where, AnyOf):
        return "(" + " OR ".join(condition(sql, p, g) for p in where.parts) + ")" \
            if where.parts else "0"
    raise TypeError(where)


def from_where(sql: Sql, part: Part) -> tuple[str, str]:
    """``FROM ... WHERE ...`` of the concept rows ``c`` of a part, and the ORDER BY term:
    the most selective condition read from its index drives (``c.code IN (...)``), the
    others probe each row found. With a driver the order is by an expression, so that
    SQLite sorts what the driver found instead of walking the whole system in order."""
    g = sql.p(part.system.gen)
    conds = _conjuncts(part.where)
    ranked = [(rank, i) for i, w in enumerate(conds) if (rank := _rank(w)) is not None]
    if not ranked:
        every = " AND ".join(condition(sql, w, g) for w in conds) or "1"
        return f"FROM concepts c WHERE c.gen = {g} AND {every}", "c.seq"
    best = min(ranked)[1]
    driver = (condition(sql, conds[best], g) if isinstance(conds[best], Codes)
              else f"c.code IN ({_driver(sql, conds[best], g)})")
    tests = [condition(sql, w, g) for i, w in enumerate(conds) if i != best]
    return f"FROM concepts c WHERE c.gen = {g} AND {' AND '.join([driver, *tests])}", "c.seq + 0"


def _insert_chunk(c: sqlite3.Connection, gen: str, start: int,
                  rows: Sequence[ConceptRow]) -> None:
    words = [r.words() for r in rows]
    c.executemany(
        "INSERT OR REPLACE INTO concepts (gen, code, seq, display, active, abstract, data, words) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(gen, r.code, start + i, r.display, int(r.active), int(r.abstract),
          orjson.dumps(r.data()).decode(), "".join(" " + w for w in ws))
         for i, (r, ws) in enumerate(zip(rows, words, strict=True))])
    c.executemany("INSERT OR IGNORE INTO concept_closure (gen, ancestor, code) VALUES (?, ?, ?)",
                  [(gen, a, r.code) for r in rows for a in (r.code, *r.ancestors)])
    c.executemany("INSERT OR IGNORE INTO concept_props (gen, prop, code) VALUES (?, ?, ?)",
                  [(gen, p, r.code) for r in rows for p in r.property_keys()])
    c.executemany("INSERT OR IGNORE INTO concept_words (gen, word, code) VALUES (?, ?, ?)",
                  [(gen, w, r.code) for r, ws in zip(rows, words, strict=True) for w in ws])


def _delete_gens(c: sqlite3.Connection, gens: list[str]) -> None:
    for gen in gens:
        for table in GEN_TABLES:
            c.execute(f"DELETE FROM {table} WHERE gen = ?", (gen,))
        c.execute("DELETE FROM concept_builds WHERE gen = ?", (gen,))


class SqliteConcepts(Concepts):
    def __init__(self, db: Database) -> None:
        self.db = db
        db.conn.create_function("fhir_regex", 2, _regex, deterministic=True)

    def create_schema(self) -> None:
        # At start-up, after the database's own schema (which ends SQLite's busy handler):
        # several processes may be creating a new file's schema at once, so wait for the
        # lock here too, or the second worker fails with "database is locked".
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_WAIT * 1000)}")
        try:
            conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _rows(self, text: str, params: Any) -> list[Any]:
        def run(c: sqlite3.Connection) -> list[Any]:
            with bounded(c):
                return c.execute(text, params).fetchall()

        return await self.db.read(run)

    # -- code system versions -----------------------------------------------------------

    async def system(self, *, url: str, version: str) -> SystemVersion | None:
        rows = await self._rows("SELECT url, version, gen, source, content, count FROM "
                                "code_systems WHERE url = ? AND version = ?", (url, version))
        return _system(rows[0]) if rows else None

    async def versions(self, *, url: str) -> list[SystemVersion]:
        rows = await self._rows("SELECT url, version, gen, source, content, count FROM "
                                "code_systems WHERE url = ? ORDER BY version", (url,))
        return [_system(r) for r in rows]

    async def replace(self, *, system: SystemVersion, concepts: Sequence[ConceptRow]
                      ) -> SystemVersion:
        gen = uuid.uuid4().hex[:16]
        await self.db.write(lambda c: c.execute(
            "INSERT INTO concept_builds (gen, url, version) VALUES (?, ?, ?)",
            (gen, system.url, system.version)))
        for start in range(0, len(concepts), CHUNK):
            chunk = concepts[start:start + CHUNK]
            await self.db.write(lambda c, s=start, ch=chunk: _insert_chunk(c, gen, s, ch))  # type: ignore[misc]
            await asyncio.sleep(0)  # let requests run between chunks
        stored = replace(system, gen=gen, count=len(concepts))

        def swap(c: sqlite3.Connection) -> list[str]:
            c.execute("INSERT OR REPLACE INTO code_systems (url, version, gen, source, content, "
                      "count) VALUES (?, ?, ?, ?, ?, ?)",
                      (stored.url, stored.version, gen, stored.source, stored.content,
                       stored.count))
            return [row[0] for row in c.execute(
                "SELECT gen FROM concept_builds WHERE url = ? AND version = ? AND gen != ?",
                (stored.url, stored.version, gen))]

        old = await self.db.write(swap)
        await self.db.write(lambda c: _delete_gens(c, old))
        return stored

    async def set_source(self, *, url: str, version: str, source: str) -> None:
        await self.db.write(lambda c: c.execute(
            "UPDATE code_systems SET source = ? WHERE url = ? AND version = ?",
            (source, url, version)))

    async def drop(self, *, url: str, version: str) -> None:
        def run(c: sqlite3.Connection) -> None:
            gens = [row[0] for row in c.execute(
                "SELECT gen FROM concept_builds WHERE url = ? AND version = ?", (url, version))]
            c.execute("DELETE FROM code_systems WHERE url = ? AND version = ?", (url, version))
            _delete_gens(c, gens)

        await self.db.write(run)

    # -- concepts -----------------------------------------------------------------------

    async def get(self, *, system: SystemVersion, codes: Sequence[str]) -> dict[str, ConceptRow]:
        sql = Sql()
        text = (f"SELECT code, display, active, abstract, data FROM concepts WHERE "
                f"gen = {sql.p(system.gen)} AND code IN ({sql.ps(list(codes))})")
        return {row[0]: _concept(row) for row in await self._rows(text, sql.params)}

    async def children(self, *, system: SystemVersion, code: str) -> list[str]:
        rows = await self._rows(
            # CROSS JOIN: read the parent index first, whatever the planner's statistics say
            "SELECT p.code FROM concept_props p CROSS JOIN concepts c ON c.gen = p.gen "
            "AND c.code = p.code WHERE p.gen = ? AND p.prop = ? ORDER BY c.seq",
            (system.gen, f"parent|{code}"))
        return [row[0] for row in rows]

    async def is_below(self, *, system: SystemVersion, code: str, ancestor: str) -> bool:
        rows = await self._rows("SELECT 1 FROM concept_closure WHERE gen = ? AND ancestor = ? "
                                "AND code = ?", (system.gen, ancestor, code))
        return bool(rows)

    async def _rarest_first(self, part: Part) -> Part:
        """The text filter's words ordered by how many concepts have them (counted up to a
        bound, from the word index), so that the rarest one is read and the others checked."""
        words = [w for w in _conjuncts(part.where) if isinstance(w, Words)]
        if len(words) < 2:
            return part
        counts = {}
        for w in words:
            prefix = w.prefixes[0]
            rows = await self._rows(
                "SELECT count(*) FROM (SELECT 1 FROM concept_words WHERE gen = ? AND word >= ? "
                "AND word < ? LIMIT ?)", (part.system.gen, prefix, successor(prefix), RARITY_CAP))
            counts[prefix] = int(rows[0][0])
        ordered = Words(tuple(sorted(counts, key=lambda p: (counts[p], -len(p)))))
        rest = [w for w in _conjuncts(part.where) if not isinstance(w, Words)]
        return Part(part.system, AllOf((ordered, *rest)))

    async def count(self, *, part: Part) -> int:
        part = await self._rarest_first(part)
        sql = Sql()
        text = f"SELECT count(*) {from_where(sql, part)[0]}"
        return int((await self._rows(text, sql.params))[0][0])

    async def select(self, *, part: Part, offset: int, limit: int) -> list[ConceptRow]:
        part = await self._rarest_first(part)
        sql = Sql()
        found, order = from_where(sql, part)
        text = (f"SELECT c.code, c.display, c.active, c.abstract, c.data {found} "
                f"ORDER BY {order} LIMIT {sql.p(limit)} OFFSET {sql.p(offset)}")
        return [_concept(row) for row in await self._rows(text, sql.params)]

    async def codes(self, *, part: Part) -> list[str]:
        sql = Sql()
        found, order = from_where(sql, part)
        text = f"SELECT c.code {found} ORDER BY {order}"
        return [row[0] for row in await self._rows(text, sql.params)]

    # -- code sets ----------------------------------------------------------------------

    async def store_set(self, *, key: str, parts: Sequence[Part], listed: Sequence[str]) -> int:
        def run(c: sqlite3.Connection) -> int:
            c.execute("DELETE FROM code_set_members WHERE setkey = ?", (key,))
            for part in parts:
                sql = Sql()
                with bounded(c):
                    c.execute(f"INSERT OR IGNORE INTO code_set_members (setkey, sc) "
                              f"SELECT {sql.p(key)}, {sql.p(part.system.url + '|')} || c.code "
                              f"{from_where(sql, part)[0]}", sql.params)
            c.executemany("INSERT OR IGNORE INTO code_set_members (setkey, sc) VALUES (?, ?)",
                          [(key, sc) for sc in listed])
            n = int(c.execute("SELECT count(*) FROM code_set_members WHERE setkey = ?",
                              (key,)).fetchone()[0])
            c.execute("INSERT OR REPLACE INTO code_sets (setkey, n) VALUES (?, ?)", (key, n))
            return n

        return await self.db.write(run)

    async def has_set(self, *, key: str) -> bool:
        return bool(await self._rows("SELECT 1 FROM code_sets WHERE setkey = ?", (key,)))

    async def set_members(self, *, key: str) -> list[str]:
        rows = await self._rows("SELECT sc FROM code_set_members WHERE setkey = ?", (key,))
        return [row[0] for row in rows]

    async def drop_set(self, *, key: str) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM code_set_members WHERE setkey = ?", (key,))
            c.execute("DELETE FROM code_sets WHERE setkey = ?", (key,))

        await self.db.write(run)

    async def hierarchy(self, *, gens: Sequence[str], code: str, below: bool) -> list[str]:
        sql = Sql()
        if below:
            text = (f"SELECT DISTINCT code FROM concept_closure WHERE gen IN ({sql.ps(list(gens))}) "
                    f"AND ancestor = {sql.p(code)}")
        else:
            text = (f"SELECT DISTINCT ancestor FROM concept_closure WHERE "
                    f"gen IN ({sql.ps(list(gens))}) AND code = {sql.p(code)}")
        return [row[0] for row in await self._rows(text, sql.params)]
