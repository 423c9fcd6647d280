"""Parity: the engine of this run and the Python evaluator return the same ids.

Three interpreters run every search: the SQLite compiler (``storage/sqlite/sql.py``), the
MongoDB filter compiler (``storage/mongo/filters.py``) and the evaluator
(``search/evaluate.py``, which judges content that has no row, and FerretDB's element
conditions). A generated data set (``parity_data.py``) is stored in this run's engine
(SQLite, or MongoDB/FerretDB), and 2,040 generated queries (``parity_queries.py``) are
run through ``Repository.search`` (with its sort and limit), ``count`` and ``matches``;
the expected answer is the evaluator's judgement of every resource's search values, with
chains, ``_has`` and code sets resolved over the data set in Python, and sorts ordered by
the rule ``Repository.search`` states. Seeded: a failure names the query, which fails
the same way on every run.

On FerretDB the repository judges element conditions (dates, numbers, quantities) with
the evaluator itself, because FerretDB cannot run ``$elemMatch`` over sub-documents; run
the suite with ``MONGODB_URI`` to hold MongoDB's ``$elemMatch`` filters to the same answers.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.evaluate import evaluate
from fhir_server.search.normalize import key
from fhir_server.search.parse import PREFIXES, criteria_of, prefix_of, split_values
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    And,
    Chain,
    Has,
    HierarchyCodes,
    Ids,
    Keys,
    KeysInSet,
    NoKeys,
    Or,
    Query,
    SortKey,
    StoredHierarchy,
    StoredSet,
    ValueSetCodes,
    and_,
    or_,
)
from fhir_server.search.registry import lookup
from fhir_server.storage.concepts import ConceptRow, SystemVersion
from fhir_server.storage.open import open_repository
from fhir_server.storage.repository import Repository
from tests.search.parity_data import BASE, BODY, BODY_TREE, VALUE_SETS, Dataset, generate, hierarchy
from tests.search.parity_queries import QUERIES, ParityQuery, parity_queries

CHUNKS = 12
SHOWN = 15  # failures spelled out in a message


@dataclass
class Parity:
    repo: Repository
    data: Dataset
    sets: dict[str, str]  # value set url -> stored set key
    gens: tuple[str, ...]  # the concept store generation of BODY
    queries: list[ParityQuery]


async def _store_codes(repo: Repository) -> tuple[dict[str, str], tuple[str, ...]]:
    """The hierarchy and the value sets in the concept store, as the terminology service
    stores them before a search (``service/search/codes.py``)."""
    rows = [ConceptRow(code=c, parents=(p,) if p else (),
                       ancestors=tuple(sorted(hierarchy(c, below=False) - {c})))
            for c, p in BODY_TREE.items()]
    system = await repo.concepts.replace(
        system=SystemVersion(url=BODY, version="", source="CodeSystem/parity/_history/1",
                             content="complete"), concepts=rows)
    sets = {}
    for n, (url, members) in enumerate(sorted(VALUE_SETS.items())):
        sets[url] = f"parity-{n}"
        await repo.concepts.store_set(key=sets[url], parts=[], listed=list(members))
    return sets, (system.gen,)


@pytest.fixture(scope="module")
async def parity(new_store: Callable[[], Any]) -> AsyncIterator[Parity]:
    store = new_store()
    repo = await open_repository(store.settings())
    try:
        data = generate()
        for at, type_, items in data.batches():
            await repo.append_new(type_=type_, items=items, ts=at)
        for type_, id_ in sorted(data.deleted):
            await repo.write(type_=type_, id_=id_, previous=1, text=None, index=None,
                             method="DELETE")
        sets, gens = await _store_codes(repo)
        yield Parity(repo, data, sets, gens, parity_queries(data, QUERIES))
    finally:
        await repo.close()
        await store.drop()


# -- the expected answer: the evaluator over the data set ----------------------------------

def _prepared(p: Parity, query: Query) -> Query:
    """The query with its code sources stored (what ``prepare`` does before a search)."""
    if isinstance(query, And | Or):
        return type(query)(tuple(_prepared(p, q) for q in query.parts))
    if isinstance(query, Chain):
        return Chain(query.param, query.target, _prepared(p, query.inner))
    if isinstance(query, Has):
        return Has(query.source, query.param, query.type_, _prepared(p, query.inner))
    if isinstance(query, KeysInSet):
        src = query.source
        if isinstance(src, ValueSetCodes):
            return KeysInSet(query.kind, query.param, StoredSet(p.sets[src.url]), query.negate)
        if isinstance(src, HierarchyCodes):
            return KeysInSet(query.kind, query.param, StoredHierarchy(
                src.system, p.gens, src.code, src.below), query.negate)
    return query


def _matching(p: Parity, type_: str, query: Query) -> list[str]:
    plain = _resolved(p, query)
    return [i for i in p.data.live(type_)
            if evaluate(plain, id_=i, index=p.data.index[type_][i], ts=p.data.stored_at[type_][i])]


def _resolved(p: Parity, query: Query) -> Query:
    """Chains, ``_has`` and code sets as keys and ids, found in the data set itself."""
    if isinstance(query, And):
        return and_(*[_resolved(p, q) for q in query.parts])
    if isinstance(query, Or):
        return or_(*[_resolved(p, q) for q in query.parts])
    if isinstance(query, Chain):
        ids = _matching(p, query.target, query.inner)
        return Keys("rf", tuple(key(query.param, f"{query.target}/{i}") for i in ids))
    if isinstance(query, Has):
        prefix = key(query.param, f"{query.type_}/")
        refs = {r[len(prefix):] for i in _matching(p, query.source, query.inner)
                for r in p.data.index[query.source][i].get("rf", ()) if r.startswith(prefix)}
        return Ids(tuple(sorted(refs)))
    if isinstance(query, KeysInSet):
        src = query.source
        if isinstance(src, StoredSet):
            url = next(u for u, k in p.sets.items() if k == src.key)
            keys = [key(query.param, m) for m in VALUE_SETS[url]]
        else:
            assert isinstance(src, StoredHierarchy)
            keys = [key(query.param, src.system, c)
                    for c in sorted(hierarchy(src.code, below=src.below))]
        if not keys:
            return EVERYTHING if query.negate else NOTHING
        return (NoKeys if query.negate else Keys)(query.kind, tuple(keys))
    return query


def _sort_value(p: Parity, type_: str, id_: str, name: str) -> tuple[int, Any]:
    if name == "_id":
        return (1, id_)
    if name == "_lastUpdated":
        return (1, p.data.stored_at[type_][id_])
    value = p.data.index[type_][id_].get("so", {}).get(name)
    return (0, 0) if value is None else (1, value)


def _ordered(p: Parity, type_: str, ids: list[str], sort: tuple[SortKey, ...]) -> list[str]:
    """The order ``Repository.search`` promises: each key in turn, a missing value before
    every value ascending (after, descending), then the id in the last key's direction."""
    if not sort:
        return sorted(ids)
    out = sorted(ids, reverse=sort[-1].descending)
    for k in reversed(sort):
        out.sort(key=lambda i, n=k.name: _sort_value(p, type_, i, n),  # type: ignore[misc]
                 reverse=k.descending)
    return out


# -- the comparison -----------------------------------------------------------------------

async def _check(p: Parity, q: ParityQuery, rng: random.Random) -> str | None:
    """None when the engine agrees with the evaluator on ``q``, else what differs."""
    compiled = compile_criteria(CompileContext(base_url=BASE), q.type_,
                                criteria_of(list(q.params)))
    query = _prepared(p, compiled)
    expected = _ordered(p, q.type_, _matching(p, q.type_, query), q.sort)[:q.limit]
    found = await p.repo.search(type_=q.type_, query=query, sort=q.sort, limit=q.limit)
    if not q.sort:
        found = sorted(found)
    if found != expected:
        missing = sorted(set(expected) - set(found))[:8]
        extra = sorted(set(found) - set(expected))[:8]
        order = "" if missing or extra else f" same ids, order {found[:8]} != {expected[:8]}"
        return f"{q}: engine lacks {missing} and adds {extra}{order}"
    if rng.random() < 0.05:
        total = len(_matching(p, q.type_, query))
        counted = await p.repo.count(type_=q.type_, query=query)
        if counted != total:
            return f"{q}: count {counted} != {total}"
    if rng.random() < 0.05:
        id_ = rng.choice(p.data.ids(q.type_))  # deleted ones included: they never match
        want = id_ in _matching(p, q.type_, query)
        if await p.repo.matches(type_=q.type_, id_=id_, query=query) != want:
            return f"{q}: matches({id_}) is not {want}"
    return None


@pytest.mark.parametrize("chunk", range(CHUNKS))
async def test_engine_agrees_with_evaluator(parity: Parity, chunk: int) -> None:
    rng = random.Random(chunk)
    size = QUERIES // CHUNKS
    failures = [f for q in parity.queries[chunk * size:(chunk + 1) * size]
                if (f := await _check(parity, q, rng)) is not None]
    assert not failures, (f"{len(failures)} of {size} queries disagree:\n"
                          + "\n".join(failures[:SHOWN]))


# -- what the queries cover (no database) ----------------------------------------------------

def _covered(queries: list[ParityQuery]) -> set[str]:
    seen: set[str] = set()
    for q in queries:
        for name, value in q.params:
            _cover(seen, q.type_, name, value)
        if q.sort:
            seen.add("sort")
    return seen


def _cover(seen: set[str], type_: str, name: str, value: str) -> None:
    if name.startswith("_has:"):
        seen.add("_has")
        source, _, rest = name[5:].partition(":")
        _cover(seen, source, rest.partition(":")[2], value)
        return
    head, dot, rest = name.partition(".")
    base, _, modifier = head.partition(":")
    if dot:
        seen.add("chain")
        param = lookup(type_, base)
        target = modifier or (param.target[0] if param and param.target else "")
        inner = [t for t in ((target,) if modifier else (param.target if param else ()))
                 if rest.split(".")[0].split(":")[0] in ("_id", "_lastUpdated")
                 or lookup(t, rest.split(".")[0].split(":")[0])]
        _cover(seen, inner[0] if inner else target, rest, value)
        return
    param = lookup(type_, base)
    kind = base if base in ("_id", "_lastUpdated") else (param.type if param else "?")
    seen.add(f"type:{kind}")
    if modifier:
        seen.add(f"modifier:{'Type' if modifier[0].isupper() else modifier}")
    if kind in ("date", "number", "quantity", "_lastUpdated"):
        for v in split_values(value):
            text = v.split("|", 1)[0] if kind == "quantity" else v
            if text[:2] in PREFIXES and prefix_of(text)[0] == text[:2]:
                seen.add(f"prefix:{text[:2]}")
    if kind == "composite":
        for v in split_values(value):
            second = v.split("$", 1)[-1]
            if second[:2] in PREFIXES and prefix_of(second)[0] == second[:2]:
                seen.add(f"prefix:{second[:2]}")


def test_queries_cover_every_type_modifier_and_prefix() -> None:
    queries = parity_queries(generate(), QUERIES)
    seen = _covered(queries)
    wanted = {f"type:{t}" for t in ("string", "token", "reference", "date", "number",
                                    "quantity", "uri", "composite", "_id", "_lastUpdated")}
    wanted |= {f"modifier:{m}" for m in ("missing", "not", "text", "of-type", "in", "not-in",
                                         "below", "above", "exact", "contains",
                                         "identifier", "Type")}
    wanted |= {f"prefix:{p}" for p in PREFIXES} | {"chain", "_has", "sort"}
    assert wanted <= seen, f"not covered: {sorted(wanted - seen)}"
    assert len(queries) >= 2000


def test_generation_is_reproducible() -> None:
    """The same seed makes the same resources, instants and queries (no clock, no hash
    order), so a failure seen once is seen again."""
    first, second = generate(), generate()
    assert first.resources == second.resources
    assert [(at, t, items) for at, t, items in first.batches()] == second.batches()
    assert ([str(q) for q in parity_queries(first, 200)]
            == [str(q) for q in parity_queries(second, 200)])
