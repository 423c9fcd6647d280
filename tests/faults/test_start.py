"""Kills during start-up: the first start (database, signing keys, terminology load) and the
start of a server on existing data (a restart), each followed by a start that must be
ready in time with every acknowledged write there."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from fhir_server.terminology.loader import DEFINITIONS
from tests.factories import patient
from tests.faults.harness import (
    LOAD_SECONDS,
    RESTART_READY,
    TRANSPORT,
    Scenario,
    all_of,
    until_dead,
)
from tests.support.store import Store

MARK = "urn:faults:restart"


def packaged_counts() -> Counter[str]:
    """The terminology resources the server ships, by type: the input of the load."""
    with gzip.open(DEFINITIONS, "rt", encoding="utf-8") as lines:
        return Counter(json.loads(line)["resourceType"] for line in lines)


@pytest.mark.slow
@pytest.mark.process
async def test_first_start(store: Store) -> None:
    """Kills while a new database is created, its signing keys made and the terminology
    loaded; then a start that must be ready within 30 s plus the load, with the whole
    terminology there (no pack served half loaded)."""
    sc = Scenario("first-start", store, FHIR_TERMINOLOGY_LOAD="true")
    # Moments after the launch: the first three while the process starts, the database and
    # keys are made (cheap: nothing to redo), the others spread over the load, whose work a
    # later start reuses; then one whole load at most.
    windows = [(0.2, 2.5), (0.5, 4.0), (1.0, 6.0), (3.0, 12.0), (8.0, 30.0)]
    try:
        left: dict[str, Any] = {}
        for n in range(sc.kills):
            low, high = windows[min(n, len(windows) - 1)]
            left = await sc.kill_starting(low, high)
        await sc.start(bound=RESTART_READY + LOAD_SECONDS, left=left)
        expected = packaged_counts()
        async with sc.http() as http:
            for type_ in ("CodeSystem", "ValueSet", "ConceptMap"):
                r = await http.get(type_, params={"_summary": "count"})
                sc.check("terminology complete", r.status_code == 200
                         and r.json()["total"] >= expected[type_],
                         f"{type_}: {r.status_code} {r.text[:200]} (packaged {expected[type_]})")
            # ICD-10-CM, the second pack: a code of the data the loader reads.
            r = await http.get("CodeSystem/$lookup", params={
                "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J06.9"})
            sc.check("terminology complete", r.status_code == 200, f"ICD-10-CM J06.9: {r.text[:300]}")
            # The signing key made during the first start verifies the token minted after it.
            r = await http.post("Patient", json=patient(family="AfterFirstStart"))
            sc.check("acknowledged write kept", r.status_code == 201, r.text[:300])
    finally:
        sc.close()


@pytest.mark.slow
@pytest.mark.process
async def test_restart(store: Store) -> None:
    """Kills of a running server (while it writes) and of a starting one (on existing data,
    at a moment within its start-up time); after each, a start must be ready within 30 s
    with every acknowledged write there."""
    sc = Scenario("restart", store)
    acked: dict[str, str] = {}  # Patient id -> family, from 201 answers
    sent: set[str] = set()
    try:
        startup = await sc.start()
        while sc.tally.kills < sc.kills:
            async with sc.http() as http:
                async def write(n: int) -> None:
                    family = f"R{sc.round}x{n}"
                    sent.add(family)
                    r = await http.post("Patient", json=patient(family=family,
                                                                identifier=(MARK, family)))
                    if r.status_code == 201:
                        acked[r.json()["id"]] = family

                left = await sc.kill_during(lambda: until_dead(write), 0.05, 0.6)
            if sc.tally.kills < sc.kills:  # and one during the start that follows
                left = await sc.kill_starting(0.05, startup * 1.1)
            await sc.restart(left)
            async with sc.http() as http:
                try:
                    stored = {p["id"]: p for p in await _all(http)}
                except TRANSPORT as exc:
                    sc.fail(f"no answer after /ready: {exc!r}")
            lost = {i: f for i, f in acked.items() if i not in stored}
            sc.check("no acknowledged write lost", not lost, f"lost {sorted(lost.values())}")
            changed = {i for i, f in acked.items() if stored[i]["name"][0]["family"] != f}
            sc.check("no acknowledged write lost", not changed, f"changed {changed}")
            strays = {p["name"][0]["family"] for p in stored.values()} - sent
            sc.check("nothing written that was not sent", not strays, str(strays))
    finally:
        sc.close()


async def _all(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return await all_of(http, f"Patient?identifier={MARK}|")
