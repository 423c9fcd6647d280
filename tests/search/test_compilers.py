"""Each engine's compiler of query nodes, on its own: the MongoDB filter compiler
(``storage/mongo/filters.py``, pure) and the SQL compiler (``storage/sqlite/sql.py``: its
pure helpers, and its date tiers run on a real SQLite file). The parity test holds the
compilers to the same answers over thousands of queries; these name the rule that broke."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_server.search import values as v
from fhir_server.search.evaluate import evaluate
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    AllOf,
    And,
    AnyOf,
    Chain,
    Cmp,
    Contains,
    Element,
    Ids,
    Keys,
    NoKeys,
    Prefix,
    SortKey,
    Updated,
)
from fhir_server.storage.mongo.filters import (
    MATCH_NOTHING,
    has_elements,
    search_filter,
    sort_fields,
    to_filter,
    without_elements,
)
from fhir_server.storage.sqlite.repository import SqliteRepository
from fhir_server.storage.sqlite.sql import _driver, bounds, successor

# -- MongoDB ----------------------------------------------------------------------------------


def test_keys_and_negations() -> None:
    assert to_filter(Keys("tk", ("a",))) == {"ix.tk": "a"}
    assert to_filter(Keys("tk", ("a", "b"))) == {"ix.tk": {"$in": ["a", "b"]}}
    assert to_filter(NoKeys("tk", ("a",))) == {"ix.tk": {"$ne": "a"}}
    assert to_filter(NoKeys("tk", ("a", "b"))) == {"ix.tk": {"$nin": ["a", "b"]}}
    assert to_filter(Ids(("x",))) == {"_id": "x"}
    assert to_filter(Ids(("x",), negate=True)) == {"_id": {"$nin": ["x"]}}
    assert to_filter(EVERYTHING) == {} and to_filter(NOTHING) == MATCH_NOTHING


@pytest.mark.parametrize("prefix", ["name|a.b", "name|(x)*", "url|http://x/$y", "name|"])
def test_prefixes_are_anchored_and_escaped(prefix: str) -> None:
    pattern = to_filter(Prefix("st", prefix))["ix.st"]["$regex"]
    assert re.match(pattern, prefix + "tail") and not re.match(pattern, "z" + prefix)
    if len(prefix) > 5:
        assert not re.match(pattern, prefix[:-1] + "#")  # a metacharacter is literal
    contains = to_filter(Contains("st", prefix, "a.c"))["ix.st"]["$regex"]
    assert re.match(contains, prefix + "xxa.cyy") and not re.match(contains, prefix + "abc")


def test_elements_are_one_elem_match_and_or_splits() -> None:
    cond = AllOf((Cmp("lo", "ge", 1), Cmp("lo", "lt", 5), Cmp("hi", "eq", 3)))
    assert to_filter(Element("dt", "date", cond)) == {
        "ix.dt": {"$elemMatch": {"p": "date", "lo": {"$gte": 1, "$lt": 5}, "hi": 3}}}
    either = Element("nm", "n", AnyOf((Cmp("v", "lt", 1), Cmp("v", "gt", 2))))
    assert to_filter(either) == {"$or": [{"ix.nm": {"$elemMatch": {"p": "n", "v": {"$lt": 1}}}},
                                         {"ix.nm": {"$elemMatch": {"p": "n", "v": {"$gt": 2}}}}]}
    assert to_filter(Updated(Cmp("ts", "ge", 7))) == {"ts": {"$gte": 7}}
    with pytest.raises(ValueError):
        to_filter(Chain("subject", "Patient", EVERYTHING))


def test_search_filter_sort_and_the_part_ferretdb_runs() -> None:
    live = {"json": {"$ne": None}}
    assert search_filter(EVERYTHING) == live
    assert search_filter(Keys("tk", ("a",))) == {"$and": [{"ix.tk": "a"}, live]}
    assert sort_fields([SortKey("date", descending=True)]) == [("ix.so.date", -1), ("_id", -1)]
    assert sort_fields([SortKey("_lastUpdated"), SortKey("_id", True)]) == [("ts", 1), ("_id", -1)]
    query = And((Keys("tk", ("a",)), Element("dt", "d", Cmp("lo", "ge", 1))))
    assert has_elements(query) and not has_elements(Keys("tk", ("a",)))
    assert without_elements(query) == And((Keys("tk", ("a",)),))


# -- SQLite -----------------------------------------------------------------------------------

def test_successor_bounds_every_string_with_the_prefix() -> None:
    for prefix in ("abc", "a\U0010ffff", "\ud7ff", "name|"):
        after = successor(prefix)
        assert prefix < after and prefix + "\U0010ffff" < after
        assert "\ud800" not in after  # UTF-8 cannot hold a surrogate


def test_bounds_add_what_lo_before_hi_implies() -> None:
    found = bounds(AllOf((Cmp("lo", "ge", 10), Cmp("hi", "le", 20))))
    assert found["lo"] == (10, 20) and found["hi"] == (10, 20)
    either = bounds(AnyOf((Cmp("lo", "lt", 5), Cmp("lo", "gt", 9))))
    assert either["lo"] == (None, None)  # an OR of the two sides bounds nothing


def test_the_driver_is_the_most_selective_positive_condition() -> None:
    exact, element = Keys("tk", ("a",)), Element("dt", "d", Cmp("lo", "ge", 1))
    assert _driver(And((element, NoKeys("tk", ("b",)), exact))) == (
        exact, [element, NoKeys("tk", ("b",))])
    assert _driver(NoKeys("tk", ("b",))) == (None, [NoKeys("tk", ("b",))])


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    repo = SqliteRepository(path=tmp_path / "unit.sqlite3")
    await repo.open()
    try:
        yield repo
    finally:
        await repo.close()


async def test_a_date_search_finds_ranges_of_every_span(sqlite: SqliteRepository) -> None:
    """Ranges are read per tier of span (a day, a year, longer): a one-day search finds a
    range of each tier that holds the day, and none that ends before it."""
    day = datetime(2024, 3, 5, tzinfo=UTC)
    spans = {"hour": timedelta(hours=1), "month": timedelta(days=30),
             "decade": timedelta(days=3650), "open": datetime(9999, 12, 31, tzinfo=UTC) - day}
    items = []
    for name, span in spans.items():
        lo = day + timedelta(hours=10) - (span if name == "decade" else timedelta(0))
        items.append((name, "{}", {"dt": [{"p": "date", "lo": lo, "hi": lo + span}],
                                   "has": ["date"]}))
    items.append(("before", "{}", {"dt": [{"p": "date", "lo": day - timedelta(days=40),
                                           "hi": day - timedelta(days=39)}], "has": ["date"]}))
    await sqlite.append_new(type_="Encounter", items=items, ts=day)
    for query in ("2024-03-05", "ap2024-03-05", "ge2024-03-05", "sa2024-03-04"):
        node = v.date("date", [query])
        want = sorted(n for n, _, ix in items if evaluate(node, id_=n, index=ix))
        assert want, query  # the case is not empty
        found = await sqlite.search(type_="Encounter", query=node, sort=(SortKey("_id"),),
                                    limit=100)
        assert found == want, query
