"""FerretDB only: the concepts of a large generation judged in Python from a copy in memory.

FerretDB 1.24 on SQLite serves only ``_id`` equality from an index; every other
filter reads and decodes the whole collection, about a minute for ICD-10-CM's
98,505 concept documents on the build machine. A generation never changes once
written (a rebuild is a new generation), so its documents can be kept in this
process without ever going stale: they are kept when this process writes them,
or, for a large one, read once, and then every condition is judged here
(``matches``), with the meaning each ``Select`` node has in the engines'
filters. A small generation written by another process keeps using FerretDB's
own filtering; MongoDB always uses its indexes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fhir_server.storage.concepts import (
    Above,
    Active,
    AllOf,
    AnyOf,
    Below,
    Codes,
    Everything,
    HasProp,
    Not,
    Props,
    Regex,
    Select,
    Words,
)
from fhir_server.storage.deadline import check
from fhir_server.storage.patterns import matches

Doc = dict[str, Any]
LARGE = 5000  # concepts from which a generation is judged in Python on FerretDB
MAX_CACHED = 300_000  # concept documents kept at most (older generations are dropped)
DEADLINE_EVERY = 1000  # documents judged between two looks at the query deadline


def regex_matches(doc: Doc, where: Regex) -> bool:
    """Whether a concept document's code, display or property satisfies a regex filter (RE2:
    ``storage/patterns.py``); MongoDB's filters use it too (``concepts.py``)."""
    if where.field in ("code", "display"):
        return matches(where.pattern, doc["c"] if where.field == "code" else doc.get("d"))
    low = f"{where.field}|"
    return any(p.startswith(low) and matches(where.pattern, p[len(low):])
               for p in doc.get("p") or ())


class Generation:
    """One generation's documents in order, and each by code."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs
        self.by_code = {d["c"]: d for d in docs}

    def matches(self, doc: Doc, where: Select) -> bool:
        if isinstance(where, Everything):
            return True
        if isinstance(where, Codes):
            return doc["c"] in where.codes
        if isinstance(where, Below):
            return where.code in doc["anc"] and (where.itself or doc["c"] != where.code)
        if isinstance(where, Above):
            return doc["c"] in (self.by_code.get(where.code) or {}).get("anc", ())
        if isinstance(where, Props):
            wanted = {f"{where.name}|{v}" for v in where.values}
            return any(p in wanted for p in doc["p"])
        if isinstance(where, HasProp):
            return any(p.startswith(f"{where.name}|") for p in doc["p"])
        if isinstance(where, Regex):
            return regex_matches(doc, where)
        if isinstance(where, Words):
            return all(any(w.startswith(prefix) for w in doc["w"]) for prefix in where.prefixes)
        if isinstance(where, Active):
            return bool(doc.get("a"))
        if isinstance(where, Not):
            return not self.matches(doc, where.part)
        if isinstance(where, AllOf):
            return all(self.matches(doc, p) for p in where.parts)
        if isinstance(where, AnyOf):
            return any(self.matches(doc, p) for p in where.parts)
        raise TypeError(where)

    def select(self, where: Select) -> list[Doc]:
        """The documents satisfying ``where``, in order; ``QueryTimeout`` at the query
        deadline (``storage/deadline.py``)."""
        found: list[Doc] = []
        for n, doc in enumerate(self.docs):
            if n % DEADLINE_EVERY == 0:
                check()
            if self.matches(doc, where):
                found.append(doc)
        return found


class GenerationCache:
    def __init__(self) -> None:
        self._gens: OrderedDict[str, Generation] = OrderedDict()

    def get(self, gen: str) -> Generation | None:
        found = self._gens.get(gen)
        if found is not None:
            self._gens.move_to_end(gen)
        return found

    def put(self, gen: str, docs: list[Doc]) -> Generation:
        self._gens[gen] = Generation(sorted(docs, key=lambda d: d["q"]))
        while sum(len(g.docs) for g in self._gens.values()) > MAX_CACHED and len(self._gens) > 1:
            self._gens.popitem(last=False)
        return self._gens[gen]

    def drop(self, gen: str) -> None:
        self._gens.pop(gen, None)


# One per process: generations are named by random keys and never change, so every
# repository of the process (each server start, each CLI command) can share the copies.
PROCESS_CACHE = GenerationCache()
