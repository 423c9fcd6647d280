"""The concept store (``storage/concepts.py``) on MongoDB: one document per concept.

* ``code_systems``: ``{_id: "url|version", url, version, gen, source, content, count}``;
  ``concept_builds``: ``{_id: gen, url, version}``, the generations written.
* ``concepts``: ``{_id: "gen|code", g, c, q (order), d (display), a (active), x (abstract),
  anc: [the code and its ancestors], ch: [its children], p: ["name|value"...], w: [words],
  data}``, with
  multikey indexes on ``(g, anc)``, ``(g, p)``, ``(g, w)`` and ``(g, q)``: a lookup
  reads by ``_id``, ``is-a`` by ``anc``, a text filter is anchored regular
  expressions on ``w``; a value set's ``regex`` filter is judged here by RE2 (the codes
  found become ``c $in``), never by the database's backtracking ``$regex``.
* ``code_sets``: ``{_id: key, n, chunks}`` and ``code_set_chunks``: ``{_id: "key|i", m:
  ["system|code"...]}``, read by ``_id`` (the one filter FerretDB serves from an index).

On FerretDB, which scans the whole collection for every filter but ``_id``, a
generation this process wrote, or one of more than ``LARGE`` concepts, is judged
in Python from a copy kept in this process (``concept_cache.py``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pymongo
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

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
from fhir_server.storage.deadline import QueryTimeout, paused, remaining
from fhir_server.storage.mongo.concept_cache import (
    LARGE,
    PROCESS_CACHE,
    Generation,
    regex_matches,
)
from fhir_server.storage.mongo.engine import MongoEngine
from fhir_server.storage.mongo.fencing import check_fences
from fhir_server.storage.mongo.guarded import Guarded

Doc = dict[str, Any]
CHUNK = 2000  # concepts per insert while building; members per stored code-set chunk
SYSTEMS, BUILDS, CONCEPTS = "code_systems", "concept_builds", "concepts"
SETS, SET_CHUNKS = "code_sets", "code_set_chunks"
INDEXES = [("order", [("g", ASCENDING), ("q", ASCENDING)]),
           ("below", [("g", ASCENDING), ("anc", ASCENDING)]),
           ("props", [("g", ASCENDING), ("p", ASCENDING)]),
           ("words", [("g", ASCENDING), ("w", ASCENDING)])]
ROW = {"c": 1, "d": 1, "a": 1, "x": 1, "data": 1}


def _system(doc: Doc) -> SystemVersion:
    return SystemVersion(url=doc["url"], version=doc["version"], gen=doc["gen"],
                         source=doc["source"], content=doc["content"], count=int(doc["count"]))


def _concept(doc: Doc) -> ConceptRow:
    return concept_from(doc["c"], doc.get("d"), bool(doc.get("a")), bool(doc.get("x")),
                        doc.get("data") or {})


def _doc(gen: str, seq: int, r: ConceptRow, children: list[str]) -> Doc:
    return {"_id": f"{gen}|{r.code}", "g": gen, "c": r.code, "q": seq, "d": r.display,
            "a": r.active, "x": r.abstract, "anc": [r.code, *r.ancestors], "ch": children,
            "p": r.property_keys(), "w": r.words(), "data": r.data()}


def _prefix(text: str) -> Doc:
    return {"$regex": "^" + re.escape(text)}


@contextmanager
def _bounded() -> Iterator[None]:
    """The operations run inside end at the query deadline, when one is set
    (``storage/deadline.py``): the server is sent ``maxTimeMS`` and the client stops
    waiting then, also for a server that does not honour it."""
    left = remaining()
    if left is None:
        yield
        return
    try:
        with pymongo.timeout(left):
            yield
    except PyMongoError as error:
        if error.timeout:
            raise QueryTimeout from None
        raise


class MongoConcepts(Concepts):
    def __init__(self, db: AsyncDatabase[Doc], engine: MongoEngine, guarded: Guarded) -> None:
        self.db = db
        self.guarded = guarded
        self.indexed = engine.uses_indexes
        self.cache = PROCESS_CACHE

    async def create_indexes(self) -> None:
        if self.indexed:  # FerretDB on SQLite scans for every filter but _id
            for name, keys in INDEXES:
                await self.db[CONCEPTS].create_index(keys, name=name)

    async def _by_ids(self, coll: str, ids: Sequence[str], projection: Doc | None = None
                      ) -> list[Doc]:
        if self.indexed:
            return [d async for d in self.db[coll].find({"_id": {"$in": list(ids)}}, projection)]
        found = [await self.db[coll].find_one({"_id": i}, projection) for i in ids]
        return [d for d in found if d is not None]

    # -- code system versions -----------------------------------------------------------

    async def system(self, *, url: str, version: str) -> SystemVersion | None:
        doc = await self.db[SYSTEMS].find_one({"_id": f"{url}|{version}"})
        return None if doc is None else _system(doc)

    async def versions(self, *, url: str) -> list[SystemVersion]:
        docs = [d async for d in self.db[SYSTEMS].find({"url": url})]
        return sorted((_system(d) for d in docs), key=lambda s: s.version)

    async def replace(self, *, system: SystemVersion, concepts: Sequence[ConceptRow]
                      ) -> SystemVersion:
        gen = uuid.uuid4().hex[:16]
        await self.db[BUILDS].insert_one({"_id": gen, "url": system.url,
                                          "version": system.version})
        children: dict[str, list[str]] = {}
        for r in concepts:
            for parent in r.parents:
                children.setdefault(parent, []).append(r.code)
        kept: list[Doc] = []
        for start in range(0, len(concepts), CHUNK):
            docs = [_doc(gen, start + i, r, children.get(r.code, []))
                    for i, r in enumerate(concepts[start:start + CHUNK])]
            await self.db[CONCEPTS].insert_many(docs, ordered=False)
            if not self.indexed:
                kept += docs
            await asyncio.sleep(0)
        if kept:
            self.cache.put(gen, kept)
        stored = replace(system, gen=gen, count=len(concepts))
        await check_fences(self.db, self.guarded)  # the switch to the new build is the commit
        await self.db[SYSTEMS].replace_one(
            {"_id": f"{stored.url}|{stored.version}"},
            {"url": stored.url, "version": stored.version, "gen": gen, "source": stored.source,
             "content": stored.content, "count": stored.count}, upsert=True)
        old = [d["_id"] async for d in self.db[BUILDS].find(
            {"url": stored.url, "version": stored.version})]
        await self._delete_gens([g for g in old if g != gen])
        return stored

    async def _delete_gens(self, gens: list[str]) -> None:
        for gen in gens:
            self.cache.drop(gen)
            await self.db[CONCEPTS].delete_many({"g": gen})
            await self.db[BUILDS].delete_one({"_id": gen})

    async def set_source(self, *, url: str, version: str, source: str) -> None:
        await self.db[SYSTEMS].update_one({"_id": f"{url}|{version}"}, {"$set": {"source": source}})

    async def drop(self, *, url: str, version: str) -> None:
        await self.db[SYSTEMS].delete_one({"_id": f"{url}|{version}"})
        await self._delete_gens([d["_id"] async for d in self.db[BUILDS].find(
            {"url": url, "version": version})])

    # -- concepts -----------------------------------------------------------------------

    async def get(self, *, system: SystemVersion, codes: Sequence[str]) -> dict[str, ConceptRow]:
        docs = await self._by_ids(CONCEPTS, [f"{system.gen}|{c}" for c in codes], ROW)
        return {d["c"]: _concept(d) for d in docs}

    async def children(self, *, system: SystemVersion, code: str) -> list[str]:
        doc = await self.db[CONCEPTS].find_one({"_id": f"{system.gen}|{code}"}, {"ch": 1})
        return list((doc or {}).get("ch") or [])

    async def is_below(self, *, system: SystemVersion, code: str, ancestor: str) -> bool:
        doc = await self.db[CONCEPTS].find_one({"_id": f"{system.gen}|{code}"}, {"anc": 1})
        return doc is not None and ancestor in (doc.get("anc") or [])

    async def _filter(self, where: Select, gen: str, among: frozenset[str] | None = None) -> Doc:
        """The MongoDB filter of a condition. ``among``: codes the condition is ANDed with
        (a listed ``Codes``), so that only they matter, and a regex reads only them."""
        if isinstance(where, Everything):
            return {}
        if isinstance(where, Codes):
            return {"c": {"$in": list(where.codes)}}
        if isinstance(where, Below):
            return {"anc": where.code} if where.itself else {
                "$and": [{"anc": where.code}, {"c": {"$ne": where.code}}]}
        if isinstance(where, Above):
            doc = await self.db[CONCEPTS].find_one({"_id": f"{gen}|{where.code}"}, {"anc": 1})
            return {"c": {"$in": list((doc or {}).get("anc") or [])}}
        if isinstance(where, Props):
            return {"p": {"$in": [f"{where.name}|{v}" for v in where.values]}}
        if isinstance(where, HasProp):
            return {"p": _prefix(f"{where.name}|")}
        if isinstance(where, Regex):
            return {"c": {"$in": await self._regex_codes(where, gen, among)}}
        if isinstance(where, Words):
            return {"$and": [{"w": _prefix(w)} for w in where.prefixes]} if where.prefixes else {}
        if isinstance(where, Active):
            return {"a": True}
        if isinstance(where, Not):
            return {"$nor": [await self._filter(where.part, gen, among)]}
        if isinstance(where, AllOf):
            for listed in (p for p in where.parts if isinstance(p, Codes)):
                among = frozenset(listed.codes) & among if among is not None \
                    else frozenset(listed.codes)
            return {"$and": [await self._filter(p, gen, among) for p in where.parts]} \
                if where.parts else {}
        if isinstance(where, AnyOf):
            if not where.parts:
                return {"_id": {"$in": []}}
            return {"$or": [await self._filter(p, gen, among) for p in where.parts]}
        raise TypeError(where)

    async def _regex_codes(self, where: Regex, gen: str, among: frozenset[str] | None
                           ) -> list[str]:
        """The codes of a generation (of ``among`` only, when given) satisfying a regex filter,
        judged here by RE2 as on every engine, not by the database's ``$regex`` (PCRE on
        MongoDB backtracks: ``(a+)+`` would hold the query until its time limit). Reads the
        codes' displays or properties once, under the query's deadline."""
        fields = {"c": 1, "d": 1} if where.field in ("code", "display") else {"c": 1, "p": 1}
        query: Doc = {"g": gen} if among is None else {"_id": {"$in": [f"{gen}|{c}"
                                                                       for c in among]}}
        return [d["c"] async for d in self.db[CONCEPTS].find(query, fields)
                if regex_matches(d, where)]

    async def _in_memory(self, gen: str, count: int | None = None) -> Generation | None:
        """FerretDB: the documents of a generation written here, or of a large one (read once),
        kept in this process."""
        if self.indexed:
            return None
        found = self.cache.get(gen)
        if found is not None:
            return found
        if count is None:
            system = await self.db[SYSTEMS].find_one({"gen": gen}, {"count": 1})
            count = int(system["count"]) if system else 0
        if count < LARGE:
            return None
        with paused():  # read once for every later query, not only for this one
            return self.cache.put(gen, [d async for d in self.db[CONCEPTS].find({"g": gen})])

    async def _query(self, part: Part) -> Doc:
        inner = await self._filter(part.where, part.system.gen)
        return {"$and": [{"g": part.system.gen}, inner]} if inner else {"g": part.system.gen}

    async def count(self, *, part: Part) -> int:
        memory = await self._in_memory(part.system.gen, part.system.count)
        if memory is not None:
            return len(memory.select(part.where))
        with _bounded():
            return await self.db[CONCEPTS].count_documents(await self._query(part))

    async def select(self, *, part: Part, offset: int, limit: int) -> list[ConceptRow]:
        memory = await self._in_memory(part.system.gen, part.system.count)
        if memory is not None:
            return [_concept(d) for d in memory.select(part.where)[offset:offset + limit]]
        with _bounded():
            cursor = self.db[CONCEPTS].find(await self._query(part), ROW)
            cursor = cursor.sort([("q", ASCENDING)]).skip(offset).limit(limit)
            return [_concept(d) async for d in cursor]

    async def codes(self, *, part: Part) -> list[str]:
        memory = await self._in_memory(part.system.gen, part.system.count)
        if memory is not None:
            return [d["c"] for d in memory.select(part.where)]
        with _bounded():
            cursor = self.db[CONCEPTS].find(await self._query(part), {"c": 1, "q": 1})
            return [d["c"] async for d in cursor.sort([("q", ASCENDING)])]

    # -- code sets ----------------------------------------------------------------------

    async def store_set(self, *, key: str, parts: Sequence[Part], listed: Sequence[str]) -> int:
        members: dict[str, None] = {}
        for part in parts:
            members.update((f"{part.system.url}|{c}", None) for c in await self.codes(part=part))
        members.update((sc, None) for sc in listed)
        ordered = list(members)
        await self.drop_set(key=key)
        chunks = [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]
        if chunks:
            await self.db[SET_CHUNKS].insert_many(
                [{"_id": f"{key}|{i}", "m": m} for i, m in enumerate(chunks)])
        await self.db[SETS].insert_one({"_id": key, "n": len(ordered), "chunks": len(chunks)})
        return len(ordered)

    async def has_set(self, *, key: str) -> bool:
        return await self.db[SETS].find_one({"_id": key}, {"_id": 1}) is not None

    async def set_members(self, *, key: str) -> list[str]:
        head = await self.db[SETS].find_one({"_id": key})
        if head is None:
            return []
        docs = await self._by_ids(SET_CHUNKS, [f"{key}|{i}" for i in range(int(head["chunks"]))])
        return [sc for d in sorted(docs, key=lambda d: int(d["_id"].rsplit("|", 1)[1]))
                for sc in d["m"]]

    async def drop_set(self, *, key: str) -> None:
        head = await self.db[SETS].find_one({"_id": key})
        if head is None:
            return
        await self.db[SETS].delete_one({"_id": key})
        for i in range(int(head.get("chunks", 0))):
            await self.db[SET_CHUNKS].delete_one({"_id": f"{key}|{i}"})

    async def hierarchy(self, *, gens: Sequence[str], code: str, below: bool) -> list[str]:
        found: dict[str, None] = {}
        for gen in gens:
            memory = await self._in_memory(gen)
            if memory is not None:
                where = Below(code) if below else Above(code)
                found.update((d["c"], None) for d in memory.select(where))
                continue
            if below:
                async for d in self.db[CONCEPTS].find({"g": gen, "anc": code}, {"c": 1}):
                    found[d["c"]] = None
            else:
                doc = await self.db[CONCEPTS].find_one({"_id": f"{gen}|{code}"}, {"anc": 1})
                found.update((a, None) for a in (doc or {}).get("anc") or [])
        return list(found)
