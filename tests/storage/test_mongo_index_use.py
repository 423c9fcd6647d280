"""MongoDB's index use, shown on paper: every filter the MongoDB engine sends is served by
an index it declares, and the reads that ought to go to one shard carry its shard key.

No MongoDB server runs here, and FerretDB scans whatever it is given, so this test needs
no database: it takes the filters (and sorts) the engine's own builders make
(``storage/mongo/filters.py`` for searches, ``versions.py``, ``guarded.py``,
``MongoRepository``'s history filter and the outbox's for the rest) for the parity test's
2,040 queries, for the outbox's reads and writes, and for the benchmarks' requests
(``bench/storage_bench.py``: searches, reads, includes; ``bench/crud_bench.py``: creates,
reads by id, updates), and checks them against the indexes ``storage/mongo/indexes.py``
declares (and ``_id``'s, which every collection has).

A filter is served when one index has a prefix of equalities it pins (``$eq``, ``$in``,
an element's ``p``), or such a prefix followed by a range (``$gt``..., an anchored
``$regex``) or by the sort's key; an ``$or`` is served when each branch is (index
union). A search with no positive condition at all (``:not``, ``:missing=true``,
``_id:not``, nothing) cannot be narrowed by any index: it may only be sorted by a key an
index orders. The shard keys are read from the README's sharding paragraph.
"""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.normalize import key
from fhir_server.search.parse import criteria_of
from fhir_server.search.query import (
    And,
    Chain,
    Has,
    Ids,
    Keys,
    KeysInSet,
    NoKeys,
    Or,
    Query,
    SortKey,
    and_,
    or_,
)
from fhir_server.search.registry import lookup
from fhir_server.storage.history import HistoryCursor, HistoryPlan
from fhir_server.storage.mongo.event_log import EVENT_FLOOR, EVENTS, FLOOR_ID, event_key
from fhir_server.storage.mongo.filters import by_id, search_filter, sort_fields
from fhir_server.storage.mongo.guarded import ABSENT, expect_filter
from fhir_server.storage.mongo.indexes import EVENT_INDEXES, HISTORY_INDEXES, type_indexes
from fhir_server.storage.mongo.outbox import (
    PENDING_EVENTS,
    SETTLED_EVENTS,
    after_filter,
    purge_filter,
)
from fhir_server.storage.mongo.repository import history_filter
from fhir_server.storage.mongo.versions import HISTORY, PENDING, version_filter
from tests.search.parity_data import BASE, generate
from tests.search.parity_queries import QUERIES, narrows, parity_queries

ROOT = Path(__file__).resolve().parent.parent.parent
Filter = dict[str, Any]
Sort = list[tuple[str, int]]
NEGATIVE_OPS = {"$ne", "$nin", "$exists", "$not"}
RANGE_OPS = {"$gt", "$gte", "$lt", "$lte"}


@dataclass(frozen=True)
class Sent:
    """One filter the engine sends: to which collection, with which sort, and why."""

    collection: str
    filter: Filter
    sort: Sort
    why: str
    positive: bool = True  # the search has a condition an index could narrow


# -- the checker -----------------------------------------------------------------------------

def _predicates(filt: Filter, path: str = "") -> tuple[set[str], set[str], list[list[Filter]]]:
    """(fields pinned by equality, fields bounded by a range, $or branch lists) of the
    conjunction ``filt``; negations and ``$exists`` pin nothing."""
    eq: set[str] = set()
    rng: set[str] = set()
    ors: list[list[Filter]] = []
    for name, test in filt.items():
        if name == "$and":
            for part in test:
                e, r, o = _predicates(part, path)
                eq, rng, ors = eq | e, rng | r, ors + o
        elif name == "$or":
            ors.append(list(test))
        elif isinstance(test, dict) and any(op.startswith("$") for op in test):
            field = path + name
            ops = set(test)
            if "$elemMatch" in ops:
                e, r, o = _predicates(test["$elemMatch"], field + ".")
                eq, rng, ors = eq | e, rng | r, ors + o
            if ops & {"$eq", "$in"}:
                eq.add(field)
            if ops & RANGE_OPS or ("$regex" in ops and str(test["$regex"]).startswith("^")):
                rng.add(field)
        else:
            eq.add(path + name)
    return eq, rng, ors


def _index_serves(keys: list[str], eq: set[str], rng: set[str], sort_key: str | None) -> bool:
    """An equality prefix (its first key pinned at least; the longer the better), or an
    empty one followed by a range or by the sort key."""
    return keys[0] in eq or keys[0] in rng or keys[0] == sort_key


def served(filt: Filter, sort: Sort, indexes: list[list[str]]) -> bool:
    eq, rng, ors = _predicates(filt)
    sort_key = sort[0][0] if sort else None
    if any(_index_serves(keys, eq, rng, sort_key) for keys in indexes):
        return True
    return any(all(served(branch, [], indexes) for branch in branches) for branches in ors)


def index_keys(collection: str) -> list[list[str]]:
    if collection in (HISTORY, EVENTS, EVENT_FLOOR):
        base = {HISTORY: HISTORY_INDEXES, EVENTS: EVENT_INDEXES, EVENT_FLOOR: []}[collection]
        declared = [keys for _, keys, _ in base]
    else:
        declared = [keys for _, keys in type_indexes(collection)]
    return [["_id"], *[[field for field, _ in keys] for keys in declared]]


# -- the filters of searches ---------------------------------------------------------------

def _resolved(type_: str, query: Query, why: str, out: list[Sent]) -> Query:
    """What ``storage/resolve.py`` makes of chains, ``_has`` and code sets (keys and ids
    of the same shape), with the inner searches it sends recorded."""
    if isinstance(query, And):
        return and_(*[_resolved(type_, q, why, out) for q in query.parts])
    if isinstance(query, Or):
        return or_(*[_resolved(type_, q, why, out) for q in query.parts])
    if isinstance(query, Chain):
        _search(query.target, query.inner, (), f"{why} (its chain's inner search)", out)
        return Keys("rf", (key(query.param, f"{query.target}/found"),))
    if isinstance(query, Has):
        _search(query.source, query.inner, (), f"{why} (its _has's inner search)", out)
        out.append(Sent(query.source, {"_id": {"$in": ["found"]}, "json": {"$ne": None}}, [],
                        f"{why} (the references of its _has)"))
        return Ids(("found",))
    if isinstance(query, KeysInSet):
        return (NoKeys if query.negate else Keys)(query.kind, (key(query.param, "s|c"),))
    return query


def _search(type_: str, query: Query, sort: tuple[SortKey, ...], why: str,
            out: list[Sent]) -> None:
    plain = _resolved(type_, query, why, out)
    out.append(Sent(type_, search_filter(plain), sort_fields(sort), why, narrows(plain)))


def search_sent(type_: str, params: list[tuple[str, str]], sort: tuple[SortKey, ...],
                why: str) -> list[Sent]:
    out: list[Sent] = []
    query = compile_criteria(CompileContext(base_url=BASE), type_, criteria_of(params))
    _search(type_, query, sort, why, out)
    return out


def parity_sent() -> Iterator[Sent]:
    for q in parity_queries(generate(), QUERIES):
        yield from search_sent(q.type_, list(q.params), q.sort, str(q))


# -- the filters of the benchmarks ------------------------------------------------------------

def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("storage_bench",
                                                  ROOT / "bench" / "storage_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def storage_bench_sent() -> Iterator[Sent]:
    bench = _bench_module()
    asked = bench.queries(random.Random(7), 10_000, "2026-01-01T00:00:00Z")
    for label, path in asked.items():
        type_, _, query = path.partition("?")
        if not query:  # a read by id
            id_ = type_.split("/")[1]
            yield Sent(type_.split("/")[0], by_id(id_), [], label)
            continue
        params = parse_qsl(query)
        sort: tuple[SortKey, ...] = ()
        criteria = []
        for name, value in params:
            if name == "_sort":
                sort = tuple(SortKey(v.lstrip("-"), v.startswith("-")) for v in value.split(","))
            elif name == "_include":
                source, param = value.split(":")[:2]
                found = lookup(source, param)
                for target in found.target if found else ():
                    yield Sent(target, {"_id": {"$in": ["found"]}, "json": {"$ne": None}}, [],
                               f"{label} (the included {target} resources)")
            elif not name.startswith("_count"):
                criteria.append((name, value))
        yield from search_sent(type_, criteria, sort or (SortKey("_id"),), label)


def crud_sent() -> Iterator[Sent]:
    """``bench/crud_bench.py``: Patients created, read by id and updated."""
    yield Sent("Patient", by_id("p1"), [], "crud read by id (current, peek)")
    yield Sent("Patient", expect_filter("p1", {"v": 1, "tx": ABSENT}), [],
               "crud update (the guarded replace)")
    for version in (1, 2):
        yield Sent(HISTORY, version_filter("Patient", "p1", version, targeted=True), [],
                   f"crud write settling version {version}")


def history_sent() -> Iterator[Sent]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cursor = HistoryCursor(as_of=now, ts=now, key="Patient/p1/2")
    order = [("ts", -1), ("_id", -1)]
    for type_, id_ in (("Patient", "p1"), ("Patient", None), (None, None)):
        plan = HistoryPlan.of(type_=type_, id_=id_, since=None, at=None, count=20,
                              cursor=cursor, exclude_types=frozenset({"AuditEvent"}))
        yield Sent(HISTORY, history_filter(plan), order,
                   f"history of {type_ or 'everything'}{'/' + id_ if id_ else ''}")
    yield Sent(HISTORY, version_filter("Patient", "p1", 3, targeted=True), [], "vread")


def outbox_sent() -> Iterator[Sent]:
    """The outbox (``storage/mongo/event_log.py``, ``outbox.py``): numbers taken, read in
    order, settled, recovered and purged."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    yield Sent(EVENTS, {}, [("_id", -1)], "the highest event number (allocation, last_event)")
    yield Sent(EVENT_FLOOR, {"_id": FLOOR_ID}, [], "the purge floor (allocation, purge)")
    yield Sent(EVENTS, after_filter(41), [("_id", 1)], "events after a consumer's cursor")
    yield Sent(EVENTS, expect_filter(event_key(41), {"st": PENDING}), [],
               "settling or voiding an event")
    yield Sent(EVENTS, PENDING_EVENTS, [], "pending events (recovery)")
    yield Sent(EVENTS, SETTLED_EVENTS, [("_id", -1)], "the highest settled event (purge)")
    for void in (False, True):
        yield Sent(EVENTS, purge_filter(upto=41, before=now, void=void), [],
                   f"purging {'void' if void else 'settled'} events")
    yield Sent(HISTORY, version_filter("Patient", "p1", 3, targeted=True), [],
               "the version a pending event names (settling it on the spot)")


# -- the tests ------------------------------------------------------------------------------

def _unserved(sent: list[Sent]) -> list[str]:
    out = []
    for s in sent:
        keys = index_keys(s.collection)
        if s.positive and served(s.filter, s.sort, keys):
            continue
        if not s.positive and (not s.sort or served({}, s.sort, keys)):
            continue  # nothing to narrow: a scan whatever the indexes, unsorted or in order
        fields = sorted(set(_named(s.filter))) or [f for f, _ in s.sort][:1]
        out.append(f"{s.why}: no index of {s.collection} serves {', '.join(fields)}")
    return out


def _named(filt: Any) -> Iterator[str]:
    """The fields of a filter, each with the search parameter it tests (``ix.dt[date]``)."""
    if isinstance(filt, list):
        for part in filt:
            yield from _named(part)
        return
    if not isinstance(filt, dict):
        return
    for name, test in filt.items():
        if name.startswith("$"):
            yield from _named(test)
        elif name == "json":
            continue
        elif isinstance(test, dict) and "$elemMatch" in test:
            yield f"{name}[{test['$elemMatch'].get('p', '?')}]"
        else:
            values = test.get("$in", test.get("$eq", test.get("$regex", test.get("$ne", ""))))\
                if isinstance(test, dict) else test
            first = values[0] if isinstance(values, list) and values else values
            param = str(first).lstrip("^").split("|", 1)[0] if name.startswith("ix.") else ""
            yield f"{name}[{param}]" if param else name


def test_every_parity_filter_is_served_by_a_declared_index() -> None:
    sent = list(parity_sent())
    assert len(sent) >= QUERIES
    problems = _unserved(sent)
    assert not problems, f"{len(problems)} filters unserved:\n" + "\n".join(problems[:20])


def test_every_benchmark_filter_is_served_by_a_declared_index() -> None:
    sent = [*storage_bench_sent(), *crud_sent(), *history_sent()]
    problems = _unserved(sent)
    assert not problems, "\n".join(problems)


def test_every_outbox_filter_is_served_by_a_declared_index() -> None:
    problems = _unserved(list(outbox_sent()))
    assert not problems, "\n".join(problems)


def _readme_shard_keys() -> dict[str, list[str]]:
    """{"resources": [...], "history": [...]} from the sharding paragraph of the README
    (or of the docs it moved to)."""
    texts = [p.read_text() for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
             if p.exists()]
    text = " ".join(" ".join(t.split()) for t in texts)
    match = re.search(r"shard each resource type's collection on `\{([^}]*)\}` and `history` "
                      r"on `\{([^}]*)\}`", text)
    assert match, "the README no longer says how to shard the collections"
    return {name: re.findall(r"(\w+):", spec) for name, spec in
            (("resources", match.group(1)), ("history", match.group(2)))}


def test_reads_that_ought_to_be_targeted_carry_the_shard_key() -> None:
    shard = _readme_shard_keys()
    assert shard == {"resources": ["_id"], "history": ["t", "i"]}, shard
    targeted = [*crud_sent(), *(s for s in storage_bench_sent() if s.why.startswith("read")),
                *(s for s in history_sent() if "/" in s.why or s.why == "vread")]
    assert len(targeted) >= 7
    for s in targeted:
        wanted = shard["history"] if s.collection == HISTORY else shard["resources"]
        eq, _, _ = _predicates(s.filter)
        assert set(wanted) <= eq, f"{s.why}: {s.filter} does not name the shard key {wanted}"


@pytest.mark.parametrize(("filt", "sort", "expected"), [
    ({"ix.tk": "gender|*|male"}, [], True),
    ({"ix.tk": {"$ne": "gender|*|male"}}, [], False),
    ({"ix.dt": {"$elemMatch": {"p": "date", "lo": {"$gte": 1}}}}, [], True),
    ({"ix.dt": {"$elemMatch": {"lo": {"$gte": 1}}}}, [], False),  # no p: not a prefix
    ({"$or": [{"ix.tk": "a"}, {"ix.st": {"$regex": "^b"}}]}, [], True),
    ({"$or": [{"ix.tk": "a"}, {"ix.st": {"$regex": "b"}}]}, [], False),  # unanchored
    ({"json": {"$ne": None}}, [("ix.so.date", -1), ("_id", -1)], True),
    ({"json": {"$ne": None}}, [("ix.so.family", 1), ("_id", 1)], False),
    ({"t": "Patient", "ts": {"$lte": 1}}, [("ts", -1)], True),
])
def test_the_checker_itself(filt: Filter, sort: Sort, expected: bool) -> None:
    """The rule on filters whose answer is known (Encounter's declared indexes)."""
    indexes = [*index_keys("Encounter"), ["t", "ts", "_id"]]
    assert served(filt, sort, indexes) is expected


def test_a_query_without_an_index_is_named() -> None:
    """A filter on a kind no index covers fails, naming the field and the parameter."""
    sent = [Sent("Patient", {"ix.zz": "family|x"}, [], "Patient?zz=x")]
    assert _unserved(sent) == ["Patient?zz=x: no index of Patient serves ix.zz[family]"]
