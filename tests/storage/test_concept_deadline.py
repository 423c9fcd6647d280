"""A concept-store query run under a deadline (``storage/deadline.py``) stops at it with
``QueryTimeout`` instead of running on: SQLite interrupts the statement, MongoDB's
operation is cut at its time limit, FerretDB's in-memory copy of a generation checks as it
goes; a code-set write so stopped stores nothing. Regex filters match by RE2's rules on
every engine."""

from __future__ import annotations

import re
import time

import pytest

from fhir_server.storage.concepts import (
    Codes,
    ConceptRow,
    Not,
    Part,
    Regex,
    SystemVersion,
    all_of,
)
from fhir_server.storage.deadline import QueryTimeout, within
from fhir_server.storage.mongo.concept_cache import LARGE, PROCESS_CACHE
from fhir_server.storage.repository import Repository
from tests.support.store import ENGINE, mongo_only

N = LARGE - 1000  # on FerretDB, a generation of another process this size is the database's
PATTERN = "(ab)*c [0-9]*7"


def rows() -> list[ConceptRow]:
    return [ConceptRow(f"k{n}", f"{'ab' * (n % 50)}c {n}") for n in range(N)]


async def stored(repo: Repository, *, in_memory: bool) -> Part:
    system = await repo.concepts.replace(
        system=SystemVersion(url="urn:test:cs:deadline", version="1",
                             source="CodeSystem/d/_history/1", content="complete"),
        concepts=rows())
    if not in_memory:
        PROCESS_CACHE.drop(system.gen)  # as a process that did not write it finds it
    return Part(system, Regex("display", PATTERN))


async def fastest_count(repo: Repository, part: Part) -> float:
    """Seconds the unbounded count takes at best; asserts what it counts."""
    expected = sum(1 for r in rows() if re.fullmatch(PATTERN, r.display or ""))
    best = float("inf")
    for _ in range(3):
        started = time.monotonic()
        assert await repo.concepts.count(part=part) == expected
        best = min(best, time.monotonic() - started)
    return best


async def stops_at_its_deadline(repo: Repository, part: Part) -> None:
    bound = await fastest_count(repo, part) / 4
    with within(bound), pytest.raises(QueryTimeout):
        await repo.concepts.count(part=part)
    with within(bound), pytest.raises(QueryTimeout):
        await repo.concepts.codes(part=part)
    with within(bound), pytest.raises(QueryTimeout):
        await repo.concepts.store_set(key="vs-deadline", parts=[part], listed=["urn:x|1"])
    assert not await repo.concepts.has_set(key="vs-deadline")
    assert await repo.concepts.set_members(key="vs-deadline") == []
    # A bound the query fits in changes nothing.
    with within(60.0):
        n = await repo.concepts.store_set(key="vs-deadline", parts=[part], listed=[])
    assert n == sum(1 for r in rows() if re.fullmatch(PATTERN, r.display or ""))


async def test_a_query_stops_at_its_deadline(repo: Repository) -> None:
    await stops_at_its_deadline(repo, await stored(repo, in_memory=False))


@mongo_only
async def test_ferretdb_in_memory_copy_stops_at_its_deadline(repo: Repository) -> None:
    if getattr(repo.concepts, "indexed", True):
        pytest.skip("on MongoDB the database filters every generation")
    await stops_at_its_deadline(repo, await stored(repo, in_memory=True))


async def test_regex_rules_are_the_same_on_every_engine(repo: Repository) -> None:
    system = await repo.concepts.replace(
        system=SystemVersion(url="urn:test:cs:rules", version="1",
                             source="CodeSystem/r/_history/1", content="complete"),
        concepts=[ConceptRow("a1", "abc"), ConceptRow("a2", "abc\n"), ConceptRow("a3", "xabc"),
                  ConceptRow("a4", "ab+c"), ConceptRow("a5", "Abc")])
    cases = {
        "abc": ["a1"],  # the whole value: not before a final newline, not inside
        "ab\\+c": ["a4"],
        "(?i)abc": ["a1", "a5"],
        "abc\\n?": ["a1", "a2"],
        ".*abc": ["a1", "a3"],
        "(a+)+bc|xabc": ["a1", "a3"],
    }
    for held in (True, False):  # FerretDB: this process's copy, then the database's documents
        if not held:
            PROCESS_CACHE.drop(system.gen)
        for pattern, expected in cases.items():
            found = await repo.concepts.codes(part=Part(system, Regex("display", pattern)))
            assert found == expected, (ENGINE, held, pattern)
            # ANDed with listed codes (as $validate-code asks), also under a Not
            listed = Codes(("a1", "a3", "a4"))
            found = await repo.concepts.codes(part=Part(system, all_of(
                listed, Regex("display", pattern))))
            assert found == [c for c in expected if c in listed.codes], (ENGINE, held, pattern)
            found = await repo.concepts.codes(part=Part(system, all_of(
                Not(Regex("display", pattern)), listed)))
            assert found == [c for c in listed.codes if c not in expected], (ENGINE, pattern)
