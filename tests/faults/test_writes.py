"""Kills while clients write: transaction Bundles from 8 clients (all or nothing), and
racing bookings of one practitioner's slots (never double, and the schedule free again
within the lease time)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.factories import patient
from tests.faults.harness import LEASE_SECONDS, TRANSPORT, LeaseHeld, Scenario, all_of, until_dead
from tests.support.store import Store

CLIENTS = 8
TXN = "urn:faults:txn"
TYPES = ("Patient", "Encounter", "Observation")


def transaction(tag: str) -> dict[str, Any]:
    """Three new resources that name one another; ``tag`` marks all three."""
    mark = [{"system": TXN, "value": tag}]
    ref = {"reference": f"urn:uuid:{tag}-p"}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{tag}-p", "request": {"method": "POST", "url": "Patient"},
         "resource": {**patient(family=f"T{tag}"), "identifier": mark}},
        {"fullUrl": f"urn:uuid:{tag}-e", "request": {"method": "POST", "url": "Encounter"},
         "resource": {"resourceType": "Encounter", "status": "finished", "identifier": mark,
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"}, "subject": ref}},
        {"fullUrl": f"urn:uuid:{tag}-o", "request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "identifier": mark,
                      "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                      "subject": ref, "encounter": {"reference": f"urn:uuid:{tag}-e"},
                      "valueQuantity": {"value": 72.5, "unit": "kg"}}}]}


@pytest.mark.slow
@pytest.mark.process
async def test_transactions(store: Store) -> None:
    sc = Scenario("transactions", store)
    sent: set[str] = set()
    acked: dict[str, set[str]] = {}  # tag -> "Type/id" from the answer's locations
    try:
        await sc.start()
        while sc.tally.kills < sc.kills:
            async with sc.http() as http:
                async def client(c: int) -> None:
                    async def send(n: int) -> None:
                        tag = f"{sc.round}-{c}-{n}"
                        sent.add(tag)
                        r = await http.post("", json=transaction(tag), headers={
                            "Content-Type": "application/fhir+json"})
                        if r.status_code == 200:
                            acked[tag] = {sc.ref(e["response"]["location"])
                                          for e in r.json()["entry"]}
                        elif r.status_code != 503:
                            sc.fail(f"transaction answered {r.status_code}: {r.text[:300]}")
                    await until_dead(send)

                async def work() -> None:
                    await asyncio.gather(*(client(c) for c in range(CLIENTS)))

                left = await sc.kill_during(work, 0.2, 1.5)
            await sc.restart(left)
            async with sc.http() as http:
                found: dict[str, set[str]] = defaultdict(set)
                for type_ in TYPES:
                    for r in await all_of(http, f"{type_}?identifier={TXN}|"):
                        found[r["identifier"][0]["value"]].add(f"{type_}/{r['id']}")
            partial = {t: sorted(v) for t, v in found.items() if len(v) != len(TYPES)}
            sc.check("no transaction partly applied", not partial, str(partial)[:500])
            lost = {t: sorted(ids - found.get(t, set())) for t, ids in acked.items()
                    if not ids <= found.get(t, set())}
            sc.check("no acknowledged write lost", not lost, str(lost)[:500])
            strays = set(found) - sent
            sc.check("nothing written that was not sent", not strays, str(strays)[:300])
    finally:
        sc.close()


SLOT = timedelta(minutes=30)
DAY0 = datetime(2031, 3, 3, 8, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def booking(patient_ref: str, doctor: str, start: datetime,
            length: timedelta = SLOT) -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": "booked",
            "start": stamp(start), "end": stamp(start + length),
            "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"},
                            {"actor": {"reference": doctor}, "status": "accepted"}]}


@pytest.mark.slow
@pytest.mark.process
async def test_bookings(store: Store) -> None:
    """8 clients race for the same slots of one practitioner (same start, or half a slot
    apart): one booking per slot wins. After each kill no two booked Appointments of the
    practitioner overlap, every acknowledged booking is there with its draft Invoice, and
    a booking of the next free slot succeeds within the lease time."""
    sc = Scenario("bookings", store)
    acked: dict[str, tuple[datetime, datetime]] = {}  # Appointment id -> period
    try:
        await sc.start()
        async with sc.http() as http:
            r = await http.post("Patient", json=patient(family="Booker"))
            pat = f"Patient/{r.json()['id']}"
            r = await http.post("Practitioner", json={"resourceType": "Practitioner",
                                                      "name": [{"family": "Busy"}]})
            doctor = f"Practitioner/{r.json()['id']}"
        frontier = [0]  # the slot the clients race for, in half slots from DAY0

        while sc.tally.kills < sc.kills:
            async with sc.http() as http:
                async def client(c: int) -> None:
                    async def send(n: int) -> None:
                        start = DAY0 + frontier[0] * SLOT / 2 + (c % 2) * SLOT / 2
                        r = await http.post("Appointment", json=booking(pat, doctor, start))
                        if r.status_code == 201:
                            acked[r.json()["id"]] = (start, start + SLOT)
                            frontier[0] += 3
                        elif r.status_code not in (409, 503):
                            sc.fail(f"booking answered {r.status_code}: {r.text[:300]}")
                    await until_dead(send)

                async def work() -> None:
                    await asyncio.gather(*(client(c) for c in range(CLIENTS)))

                left = await sc.kill_during(work, 0.2, 2.0)
            await sc.restart(left)
            ready = time.monotonic()
            async with sc.http() as http:
                booked = [a for a in await all_of(http, f"Appointment?actor={doctor}")
                          if a["status"] == "booked"]
                periods = sorted((datetime.fromisoformat(a["start"]),
                                  datetime.fromisoformat(a["end"]), a["id"]) for a in booked)
                double = [(p[2], q[2]) for p, q in itertools.pairwise(periods)
                          if q[0] < p[1]]
                sc.check("no booking double", not double, f"overlapping {double}")
                ids = {a["id"] for a in booked}
                lost = sorted(set(acked) - ids)
                sc.check("no acknowledged write lost", not lost, f"bookings {lost}")
                invoices = await all_of(http, "Invoice?status=draft")
                keys = sorted(i["identifier"][0]["value"] for i in invoices)
                sc.check("each booking has its one draft Invoice",
                         keys == sorted(f"Appointment/{i}" for i in ids),
                         f"{len(keys)} invoices for {len(ids)} bookings")
                await next_booking(sc, http, pat, doctor, frontier, acked, ready)
    finally:
        sc.close()


async def next_booking(sc: Scenario, http: httpx.AsyncClient, pat: str, doctor: str,
                       frontier: list[int], acked: dict[str, tuple[datetime, datetime]],
                       ready: float) -> None:
    """The next free slot of the schedule can be booked within the lease time of /ready."""
    frontier[0] += 3
    start = DAY0 + frontier[0] * SLOT / 2
    answers = []
    while True:
        try:
            r = await http.post("Appointment", json=booking(pat, doctor, start), timeout=30)
        except TRANSPORT as exc:
            sc.fail(f"the next booking got no answer: {exc!r}")
        waited = time.monotonic() - ready
        answers.append(f"{r.status_code} at {waited:.1f} s")
        if r.status_code == 201:
            acked[r.json()["id"]] = (start, start + SLOT)
            break
        if waited > LEASE_SECONDS:
            break
        await asyncio.sleep(0.2)
    sc.check("next booking within the lease time", r.status_code == 201
             and waited <= LEASE_SECONDS,
             f"the next booking on {doctor}'s schedule: {', '.join(answers)}; last: "
             f"{r.text[:300]}", LeaseHeld)
    frontier[0] += 3
