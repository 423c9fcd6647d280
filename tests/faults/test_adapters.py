"""Kills while the EHR adapters write: a burst of HL7 v2 ADT messages over 4 MLLP
connections (none applied twice, every acknowledged one there), and an EHR ``$sync``
from a second server process (the next sync completes, nothing synced twice)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from fhir_server.adapters.ehr_fhir import SYNC_TYPES
from tests.adapters.hl7v2.helpers import adt, field, in1, mllp
from tests.adapters.hl7v2.test_adt import MRN_SYSTEM
from tests.adapters.test_ehr_sync import ehr_admin, endpoint_for, results
from tests.faults.harness import (
    LEASE_SECONDS,
    TRANSPORT,
    FaultFailure,
    LeaseHeld,
    Scenario,
    all_of,
)
from tests.support.server_process import ServerProcess, free_port
from tests.support.store import Store

CONNECTIONS = 4
MLLP_DEAD = (OSError, asyncio.IncompleteReadError, EOFError)


@pytest.mark.slow
@pytest.mark.process
async def test_hl7v2_burst(store: Store) -> None:
    """4 MLLP connections send ADT^A04s (a patient and a visit each) until the kill; after
    the restart the sender sends again every message of the killed round, those it got no
    ACK for and the acknowledged ones too (those of earlier rounds were sent again after
    their own kill): each message is applied once (one Patient, version 1, one Encounter;
    the one doctor, payer and room of every message one resource each)."""
    port = free_port()
    sc = Scenario("hl7v2-burst", store, FHIR_HL7V2_PORT=str(port),
                  FHIR_BILLING_PROVIDER="Organization/clinic")
    sent: dict[str, str] = {}  # MRN -> message text
    acked: set[str] = set()
    this_round: dict[str, str] = {}  # what the killed round sent
    try:
        await sc.start()
        while sc.tally.kills < sc.kills:
            async def connection(c: int) -> None:
                try:
                    async with mllp(port) as conn:
                        n = 0
                        while True:
                            mrn = f"K{sc.round}C{c}N{n}"
                            text = adt("A04", mrn=mrn, visit=f"{sc.round}{c:02d}{n:04d}",
                                       given=f"G{n}", insurance=[in1(member=f"BM-{mrn}")])
                            sent[mrn] = this_round[mrn] = text
                            ack = await conn.send(text)
                            if ack.code != "AA":
                                sc.fail(f"{mrn} answered {ack.text!r}")
                            acked.add(mrn)
                            n += 1
                except MLLP_DEAD:
                    return

            async def work() -> None:
                await asyncio.gather(*(connection(c) for c in range(CONNECTIONS)))

            this_round.clear()
            left = await sc.kill_during(work, 0.2, 2.0)
            await sc.restart(left)
            ready = time.monotonic()
            async with sc.http() as http:
                before = {p["identifier"][0]["value"]: p for p in
                          await all_of(http, f"Patient?identifier={MRN_SYSTEM}|")}
                lost = sorted(acked - set(before))
                sc.check("no acknowledged write lost", not lost, f"acknowledged MRNs {lost}")
                # The sender sends again what the killed round sent (as after no ACK), on four
                # connections.
                todo = list(this_round.items())

                async def resend(todo: list[tuple[str, str]] = todo, ready: float = ready) -> None:
                    try:
                        async with mllp(port) as conn:
                            while todo:
                                mrn, text = todo.pop()
                                ack = await conn.send(text)
                                # 206 "record locked, send again": again, within the lease
                                while "|206^" in ack.text and \
                                        time.monotonic() - ready < LEASE_SECONDS:
                                    await asyncio.sleep(0.2)
                                    ack = await conn.send(text)
                                sc.check("a message sent again is acknowledged within the "
                                         "lease time", ack.code == "AA",
                                         f"{mrn} at {time.monotonic() - ready:.1f} s after "
                                         f"/ready: {ack.text!r}",
                                         LeaseHeld if "|206^" in ack.text else FaultFailure)
                                acked.add(mrn)
                    except MLLP_DEAD as exc:
                        sc.fail(f"the MLLP listener dropped a connection: {exc!r}")

                await asyncio.gather(*(resend() for _ in range(CONNECTIONS)))
                patients = await all_of(http, f"Patient?identifier={MRN_SYSTEM}|")
                mrns = Counter(next(i["value"] for i in p["identifier"]
                                    if i.get("system") == MRN_SYSTEM) for p in patients)
                twice = {m: n for m, n in mrns.items() if n > 1}
                sc.check("no HL7 v2 message applied twice", not twice, f"Patients {twice}")
                versions = {m: p["meta"]["versionId"] for p in patients
                            for m in [p["identifier"][0]["value"]]
                            if p["meta"]["versionId"] != "1"}
                sc.check("no HL7 v2 message applied twice", not versions,
                         f"Patients changed by the same message again: {versions}")
                sc.check("no acknowledged write lost", set(mrns) == set(sent),
                         f"missing {sorted(set(sent) - set(mrns))}")
                visits = Counter(next(i["value"] for i in e.get("identifier", []))
                                 for e in await all_of(http, "Encounter"))
                expected = {field(t, "PV1", 19) for t in sent.values()}
                sc.check("no HL7 v2 message applied twice",
                         set(visits) == expected and set(visits.values()) == {1},
                         f"{len(visits)} visits for {len(expected)} sent; "
                         f"{ {v: n for v, n in visits.items() if n > 1} }")
                for type_ in ("Practitioner", "Organization", "Location"):
                    r = await http.get(type_, params={"_summary": "count"})
                    sc.check("no HL7 v2 message applied twice", r.json()["total"] == 1,
                             f"{r.json()['total']} {type_} for the one in every message")
    finally:
        sc.close()


@pytest.mark.slow
@pytest.mark.process
async def test_ehr_sync(store: Store, ehr: ServerProcess, ehr_db: Store,
                        clinic_key: tuple[Path, Path]) -> None:
    """``$sync`` killed at a moment within its run; after the restart the next ``$sync``
    of the Endpoint completes within the lease time, and the clinic then holds every EHR
    resource once."""
    sc = Scenario("ehr-sync", store, FHIR_CLIENT_KEY_FILE=str(clinic_key[0]),
                  FHIR_EHR_PAGE_SIZE="20")
    async with await ehr_admin(ehr_db, ehr.base) as source:
        theirs = {t: {r["id"] for r in await all_of(source, t)} for t in SYNC_TYPES}
    body = {"resourceType": "Parameters"}
    try:
        await sc.start()
        async with sc.http() as http:
            endpoint = await endpoint_for(http, ehr.base)
            started = time.monotonic()
            r = await http.post(f"Endpoint/{endpoint}/$sync", json=body)
            assert r.status_code == 200, r.text
            took = time.monotonic() - started  # a whole first sync: the kills fall within
        while sc.tally.kills < sc.kills:
            async with sc.http() as http:
                async def work() -> None:
                    try:
                        # everything again (written only where changed), under the lease
                        await http.post(f"Endpoint/{endpoint}/$sync", json={
                            "resourceType": "Parameters", "parameter": [
                                {"name": "since", "valueDateTime": "1970-01-01T00:00:00Z"}]})
                    except TRANSPORT:
                        return

                left = await sc.kill_during(work, 0.05, max(0.2, took))
            await sc.restart(left)
            ready = time.monotonic()
            async with sc.http() as http:
                answers = []
                while True:
                    try:
                        r = await http.post(f"Endpoint/{endpoint}/$sync", json=body, timeout=60)
                    except TRANSPORT as exc:
                        sc.fail(f"the next $sync got no answer: {exc!r}")
                    waited = time.monotonic() - ready
                    answers.append(f"{r.status_code} at {waited:.1f} s")
                    if r.status_code == 200 or waited > LEASE_SECONDS:
                        break
                    await asyncio.sleep(0.2)
                sc.check("next sync within the lease time", r.status_code == 200,
                         f"{', '.join(answers)}; last: {r.text[:300]}", LeaseHeld)
                failed = {t: p["failed"] for t, p in results(r.json()).items() if p["failed"]}
                sc.check("the next sync completes", not failed, str(failed))
                for type_, ids in theirs.items():
                    mine = Counter(next(i["value"] for i in x.get("identifier", [])
                                        if i.get("system") == ehr.base)
                                   for x in await all_of(http, type_)
                                   if any(i.get("system") == ehr.base
                                          for i in x.get("identifier", [])))
                    sc.check("nothing synced twice", set(mine.values()) <= {1},
                             f"{type_}: {[k for k, n in mine.items() if n > 1][:5]}")
                    sc.check("no acknowledged write lost", set(mine) == ids,
                             f"{type_}: {len(ids - set(mine))} of the EHR's missing")
    finally:
        sc.close()
