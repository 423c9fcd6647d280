"""Kills during billing: ``Invoice/$generate-bill`` and ``Claim/$submit`` (to the loopback
clearinghouse process, the payer's side), then ``PaymentReconciliation/$import-835`` of
the remittances of the claims submitted. One clinic server and one clearinghouse for both
scenarios: the claims the first submits are those the second's 835s pay."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import httpx
import pytest

from fhir_server.terminology.systems import REMITTANCE_TRACE
from tests.faults.harness import (
    LEASE_SECONDS,
    TRANSPORT,
    FaultFailure,
    LeaseHeld,
    Scenario,
    all_of,
    until_dead,
)
from tests.support.store import Store
from tests.workflow.helpers import by_type, create, post, share
from tests.x12.test_posting import remit_for
from tests.x12.world import (
    CPT,
    ICD10CM,
    PRICES,
    clearinghouse_process,
    patient_with_coverage,
    setup_clinic,
)

CLIENTS = 4
X12 = {"Content-Type": "application/edi-x12"}
COPAY = Decimal(30)  # remit_for's CAS*PR*3 on the first line


def bill_parameters(patient: str, encounter: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": patient}},
        {"name": "encounter", "valueReference": {"reference": encounter}},
        *({"name": "service", "part": [{"name": "code", "valueCoding": {
            "system": CPT, "code": code}}]} for code in PRICES)]}


class Ledger:
    """What the clients sent and what was acknowledged."""

    def __init__(self) -> None:
        self.encounters: set[str] = set()  # Encounter ids created (201)
        self.billed: dict[str, dict[str, Any]] = {}  # Encounter id -> the bill's resources
        self.submitted: dict[str, str] = {}  # Claim id -> ClaimResponse id
        self.claims: dict[str, dict[str, Any]] = {}  # Claim id -> Claim, billed
        self.remits: dict[str, str] = {}  # trace -> Claim id: 835s sent
        self.round: set[str] = set()  # traces sent in the round last killed
        self.posted: set[str] = set()  # traces acknowledged


@pytest.mark.slow
@pytest.mark.process
async def test_bill_submit_and_835(store: Store) -> None:
    clearinghouse = clearinghouse_process()
    house = next(clearinghouse)
    bills = Scenario("bill-submit", store, FHIR_BILLING_PROVIDER="Organization/clinic")
    ledger = Ledger()
    try:
        await bills.start()
        async with bills.http() as http:
            world = await setup_clinic(http, house)
            members = [await patient_with_coverage(http, world, member=f"M{100 + c}")
                       for c in range(CLIENTS)]
            conditions = [await create(http, {
                "resourceType": "Condition", "code": {"coding": [{"system": ICD10CM,
                                                                  "code": "J06.9"}]},
                "subject": {"reference": f"Patient/{m['patient']['id']}"}}) for m in members]
        while bills.tally.kills < bills.kills:
            async with bills.http() as http:
                async def client(c: int) -> None:
                    pid = f"Patient/{members[c]['patient']['id']}"

                    async def visit(n: int) -> None:
                        r = await post(http, "Encounter", {
                            "resourceType": "Encounter", "status": "finished",
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                      "code": "AMB"}, "subject": {"reference": pid},
                            "serviceProvider": {"reference": "Organization/clinic"},
                            "period": {"start": "2026-03-02"},
                            "diagnosis": [{"condition": {
                                "reference": f"Condition/{conditions[c]['id']}"}}],
                            "location": [{"location": {"reference": world["location"]}}]})
                        if r.status_code != 201:
                            bills.fail(f"Encounter answered {r.status_code}: {r.text[:300]}")
                        eid = r.json()["id"]
                        ledger.encounters.add(eid)
                        r = await post(http, "Invoice/$generate-bill",
                                       bill_parameters(pid, f"Encounter/{eid}"))
                        if r.status_code != 200:
                            bills.fail(f"$generate-bill answered {r.status_code}: {r.text[:300]}")
                        bill = by_type(r.json())
                        ledger.billed[eid] = bill
                        claim = bill["Claim"][0]
                        ledger.claims[claim["id"]] = claim
                        r = await post(http, "Claim/$submit", claim)
                        if r.status_code != 200:
                            bills.fail(f"$submit answered {r.status_code}: {r.text[:300]}")
                        ledger.submitted[claim["id"]] = r.json()["id"]
                    await until_dead(visit)

                async def work() -> None:
                    await asyncio.gather(*(client(c) for c in range(CLIENTS)))

                left = await bills.kill_during(work, 0.2, 2.0)
            await bills.restart(left)
            async with bills.http() as http:
                await check_bills(bills, http, ledger)
        bills.close()

        remits = Scenario("import-835", store, FHIR_BILLING_PROVIDER="Organization/clinic")
        remits.server = bills.server  # the same server, port and database
        remits.token = bills.token
        await remits.start()
        unpaid = [c for c in ledger.submitted if c in ledger.claims]
        try:
            while remits.tally.kills < remits.kills:
                async with remits.http() as http:
                    async def importer(c: int) -> None:
                        async def send(n: int) -> None:
                            if not unpaid:  # nothing left to pay: reads until the kill
                                await http.get("metadata")
                                await asyncio.sleep(0.05)
                                return
                            claim_id = unpaid.pop()
                            trace = f"EFT{remits.round}X{c}X{n}"
                            ledger.remits[trace] = claim_id
                            ledger.round.add(trace)
                            r = await http.post("PaymentReconciliation/$import-835",
                                                content=remit_for(ledger.claims[claim_id],
                                                                  trace=trace).encode(),
                                                headers=X12)
                            if r.status_code != 200:
                                remits.fail(f"$import-835 answered {r.status_code}: "
                                            f"{r.text[:300]}")
                            ledger.posted.add(trace)
                        await until_dead(send)

                    async def work() -> None:
                        await asyncio.gather(*(importer(c) for c in range(2)))

                    ledger.round.clear()
                    left = await remits.kill_during(work, 0.1, 0.8)
                await remits.restart(left)
                ready = time.monotonic()
                async with remits.http() as http:
                    await check_835s(remits, http, ledger, ready, again=False)
                    await check_835s(remits, http, ledger, ready, again=True)
        finally:
            remits.close()
    finally:
        bills.close()
        clearinghouse.close()


async def check_bills(sc: Scenario, http: httpx.AsyncClient, ledger: Ledger) -> None:
    items = await all_of(http, "ChargeItem")
    per_visit = Counter(i["context"]["reference"] for i in items if "context" in i)
    wrong = {k: n for k, n in per_visit.items() if n != len(PRICES)}
    sc.check("no bill partly applied or billed twice", not wrong,
             f"ChargeItems per Encounter: {wrong} (each bill makes {len(PRICES)})")
    invoices = [i for i in await all_of(http, "Invoice") if i["status"] != "draft"]
    claims = await all_of(http, "Claim")
    sc.check("no bill partly applied or billed twice",
             len(invoices) == len(claims) == len(per_visit),
             f"{len(per_visit)} billed Encounters, {len(invoices)} Invoices, "
             f"{len(claims)} Claims")
    stored = {f"{r['resourceType']}/{r['id']}" for r in [*items, *invoices, *claims]}
    acked = {f"{r['resourceType']}/{r['id']}" for bill in ledger.billed.values()
             for rs in bill.values() for r in rs if r["resourceType"] in
             ("ChargeItem", "Invoice", "Claim")}
    sc.check("no acknowledged write lost", acked <= stored, str(sorted(acked - stored))[:300])
    responses = await all_of(http, "ClaimResponse")
    per_claim = Counter(r["request"]["reference"] for r in responses)
    twice = {k: n for k, n in per_claim.items() if n > 1}
    sc.check("no claim submitted twice", not twice, str(twice))
    lost = {c: r for c, r in ledger.submitted.items()
            if r not in {x["id"] for x in responses}}
    sc.check("no acknowledged write lost", not lost, f"ClaimResponses of {lost}")


async def check_835s(sc: Scenario, http: httpx.AsyncClient, ledger: Ledger, ready: float,
                     *, again: bool) -> None:
    """Every 835 acknowledged is posted once; with ``again``, every 835 of the round killed
    is imported again (as its sender would after no answer, or by mistake; those of earlier
    rounds were sent again after their own kill) and then each is posted exactly once."""
    if again:
        for trace in sorted(ledger.round):
            claim_id = ledger.remits[trace]
            while True:  # 409 "being posted by another request; try again": within the lease
                try:
                    r = await http.post("PaymentReconciliation/$import-835", content=remit_for(
                        ledger.claims[claim_id], trace=trace).encode(), headers=X12)
                except TRANSPORT as exc:
                    sc.fail(f"no answer to an 835 sent again: {exc!r}")
                waited = time.monotonic() - ready
                if r.status_code != 409 or waited > LEASE_SECONDS:
                    break
                await asyncio.sleep(0.2)
            sc.check("the same 835 again is accepted within the lease time",
                     r.status_code == 200, f"{trace} at {waited:.1f} s after /ready: "
                     f"{r.text[:300]}", LeaseHeld if r.status_code == 409 else FaultFailure)
            ledger.posted.add(trace)
    recs = await all_of(http, "PaymentReconciliation")
    keys = Counter(i["value"] for r in recs for i in r.get("identifier", [])
                   if i.get("system") == REMITTANCE_TRACE)
    by_trace: dict[str, int] = defaultdict(int)
    for key, n in keys.items():
        by_trace[key.rsplit("|", 1)[-1]] += n
    twice = {t: n for t, n in by_trace.items() if n > 1}
    sc.check("no 835 posted twice", not twice, str(twice))
    missing = sorted(t for t in ledger.posted if by_trace.get(t, 0) != 1)
    sc.check("no acknowledged write lost", not missing, f"835s acknowledged, not posted: "
             f"{missing}")
    for trace in ledger.posted:
        claim = ledger.claims[ledger.remits[trace]]
        invoice_ref = next(i["reference"] for bill in ledger.billed.values()
                           if bill["Claim"][0]["id"] == claim["id"] for i in
                           [{"reference": f"Invoice/{bill['Invoice'][0]['id']}"}])
        invoice = (await http.get(invoice_ref)).json()
        expected = Decimal(str(claim["total"]["value"])) - COPAY
        sc.check("no 835 posted twice", share(invoice, "insurer") == expected,
                 f"{invoice_ref}: insurer share {share(invoice, 'insurer')}, the 835 paid "
                 f"{expected}")
