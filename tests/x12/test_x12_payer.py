"""A payer reached through an X12 clearinghouse: a real clearinghouse process on loopback
checks what it receives with pyx12 and answers 271, 999 and 277CA, and serves 835s."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.store import ROOT, Store
from tests.workflow.helpers import post, share
from tests.x12.edi import Line, elements, remittance_835
from tests.x12.world import (
    CLINIC_NPI,
    CLINIC_TIN,
    PAYER_ID,
    PAYER_TIN,
    PLAN,
    patient_with_coverage,
    setup_clinic,
)
from tests.x12.world import bill as make_bill

X12 = {"Content-Type": "application/edi-x12"}
INVOICE_SHARE = "https://fhir-rcm-server.org/CodeSystem/invoice-share"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"fhir_billing_provider": "Organization/clinic", "fhir_payer_read_timeout": 20.0}


async def configure(clearinghouse: str, **config: Any) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{clearinghouse}/admin/config", json=config)).status_code == 200


async def received(clearinghouse: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        answer: list[dict[str, Any]] = (await http.get(f"{clearinghouse}/admin/received")).json()
        return answer


async def queue(clearinghouse: str, text: str) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{clearinghouse}/admin/outbox", content=text.encode())
        assert r.status_code == 200


def poll(store: Store) -> subprocess.CompletedProcess[str]:
    """``fhir-server x12 poll`` as an operator runs it."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")},
           **store.env(), "FHIR_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "fhir_server", "x12", "poll"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def segments_of(text: str, id_: str, first: str | None = None) -> list[list[str]]:
    return [s for s in elements(text) if s[0] == id_ and (first is None or s[1] == first)]


async def read(http: httpx.AsyncClient, reference: str) -> dict[str, Any]:
    r = await http.get(reference)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def count(http: httpx.AsyncClient, query: str) -> int:
    total: int = (await http.get(f"{query}{'&' if '?' in query else '?'}_summary=count")
                  ).json()["total"]
    return total


@pytest.mark.process
async def test_eligibility_in_force_and_not_found_over_x12(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M100": PLAN})
    known = await patient_with_coverage(client, world, member="M100")
    unknown = await patient_with_coverage(client, world, member="M999")

    r = await post(client, f"Coverage/{known['coverage']['id']}/$eligibility",
                   {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    answer = r.json()
    insurance = answer["insurance"][0]
    assert insurance["inforce"] is True
    assert insurance["coverage"] == {"reference": f"Coverage/{known['coverage']['id']}"}
    benefits = {b["type"]["coding"][0]["code"]: b for item in insurance["item"]
                for b in item.get("benefit", [])}
    assert Decimal(str(benefits["copay"]["allowedMoney"]["value"])) == Decimal(PLAN["copay"])
    assert Decimal(str(benefits["deductible"]["allowedMoney"]["value"])) \
        == Decimal(PLAN["deductible"])
    assert benefits["copay-percent"]["allowedUnsignedInt"] == int(Decimal(PLAN["coinsurance"]) * 100)
    assert any(i.get("name") == PLAN["name"] for i in insurance["item"])

    sent = (await received(clearinghouse))[-1]
    assert sent["kind"] == "270" and sent["valid"], sent.get("errors")
    assert segments_of(sent["text"], "NM1", "IL")[0][9] == "M100"
    assert segments_of(sent["text"], "NM1", "1P")[0][9] == CLINIC_NPI
    assert segments_of(sent["text"], "NM1", "PR")[0][9] == PAYER_ID

    r = await post(client, f"Coverage/{unknown['coverage']['id']}/$eligibility",
                   {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["insurance"][0]["inforce"] is False
    codes = {c["code"] for e in answer["error"] for c in e["code"]["coding"]}
    assert {"member-not-found", "75"} <= codes

    request = answer["request"]["reference"]
    kinds = sorted(d["type"]["coding"][0]["code"] for d in (await client.get(
        f"DocumentReference?related={request}")).json()["entry"][0:2]
        for d in [d["resource"]])
    assert kinds == ["270", "271"]


def claim_lines(claim: dict[str, Any]) -> list[tuple[str, Decimal, int]]:
    return [(i["productOrService"]["coding"][0]["code"], Decimal(str(i["net"]["value"])),
             i["sequence"]) for i in claim["item"]]


@pytest.mark.slow
@pytest.mark.process
async def test_claim_remittance_and_payments_balance_the_invoice(
        client: httpx.AsyncClient, clearinghouse: str, store: Store) -> None:
    world = await setup_clinic(client, clearinghouse)
    member = await patient_with_coverage(client, world, member="M100")
    billed = await make_bill(client, world, member["patient"])
    claim, invoice = billed["Claim"][0], billed["Invoice"][0]
    gross = Decimal(str(invoice["totalGross"]["value"]))
    assert gross == sum(Decimal(p) for p in ("400", "250"))

    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "queued"
    response_ref = f"ClaimResponse/{r.json()['id']}"

    # What went out validates against the 5010 837P map, with the source's values.
    sent = [x for x in await received(clearinghouse) if x["kind"] == "837"][-1]
    assert sent["valid"], sent["ack"]
    text = sent["text"]
    condition = billed["Condition"][0]["code"]["coding"][0]["code"]
    assert segments_of(text, "NM1", "85")[0][9] == CLINIC_NPI
    assert segments_of(text, "REF", "EI")[0][2] == CLINIC_TIN.replace("-", "")
    assert segments_of(text, "NM1", "IL")[0][9] == member["coverage"]["subscriberId"]
    assert segments_of(text, "NM1", "PR")[0][9] == PAYER_ID
    assert segments_of(text, "HI")[0][1] == "ABK:" + condition.replace(".", "")
    clm = segments_of(text, "CLM")[0]
    assert clm[1] == claim["id"] and Decimal(clm[2]) == Decimal(str(claim["total"]["value"]))
    assert clm[5].split(":")[0] == "11"
    lines = [(s[1].split(":")[1], Decimal(s[2])) for s in segments_of(text, "SV1")]
    assert lines == [(code, net) for code, net, _ in claim_lines(claim)]
    documents = (await client.get(f"DocumentReference?related=Claim/{claim['id']}")).json()
    kept = {d["resource"]["type"]["coding"][0]["code"]: d["resource"]
            for d in documents["entry"]}
    assert base64.b64decode(kept["837P"]["content"][0]["attachment"]["data"]).decode() == text

    invoice = await read(client, f"Invoice/{invoice['id']}")
    assert share(invoice, "patient") == gross and invoice["status"] == "issued"

    # The 277CA accepts it; the poller applies it: still queued.
    done = poll(store)
    assert done.returncode == 0, done.stderr
    response = await read(client, response_ref)
    assert response["outcome"] == "queued" and "277CA" in response["disposition"]

    # The 835 pays everything but a 30 copay (CAS PR 3) on the consultation.
    copay = Decimal(30)
    items = claim_lines(claim)
    remit = remittance_835(
        claim_id=claim["id"], member=member["coverage"]["subscriberId"],
        lines=[Line(code, net, net - (copay if n == 0 else 0), str(seq), copay if n == 0 else
                    Decimal(0)) for n, (code, net, seq) in enumerate(items)],
        payer_id=PAYER_ID, payer_tax=PAYER_TIN, payee_npi=CLINIC_NPI, trace="EFT0001",
        on=datetime.now(UTC).date(), control=900)
    await queue(clearinghouse, remit)
    done = poll(store)
    assert done.returncode == 0, done.stderr
    response = await read(client, response_ref)
    paid = gross - copay
    assert response["outcome"] == "complete"
    assert Decimal(str(response["payment"]["amount"]["value"])) == paid
    first = next(i for i in response["item"] if i["itemSequence"] == items[0][2])
    pr = [a for a in first["adjudication"] if a["category"]["coding"][0]["code"] == "PR"]
    assert pr[0]["reason"]["coding"][0]["code"] == "3"
    assert Decimal(str(pr[0]["amount"]["value"])) == copay
    invoice = await read(client, f"Invoice/{invoice['id']}")
    assert share(invoice, "insurer") == paid
    assert share(invoice, "patient") == copay
    assert invoice["status"] == "issued"

    # The patient pays the 30: the Invoice is balanced.
    r = await post(client, f"Invoice/{invoice['id']}/$record-payment", {
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": copay, "currency": "USD"}},
            {"name": "method", "valueCode": "CASH"},
            {"name": "reference", "valueString": "receipt 77"}]})
    assert r.status_code == 200, r.text
    invoice = await read(client, f"Invoice/{invoice['id']}")
    assert invoice["status"] == "balanced"
    assert share(invoice, "patient-paid") == copay and share(invoice, "patient") == 0

    # The same 835 again changes nothing.
    before = (invoice["meta"]["versionId"], await count(client, "PaymentReconciliation"),
              (await read(client, response_ref))["meta"]["versionId"])
    r = await client.post("PaymentReconciliation/$import-835", content=remit.encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    outcome = next(p["resource"] for p in r.json()["parameter"] if p["name"] == "outcome")
    assert "applied before" in outcome["issue"][0]["diagnostics"]
    invoice = await read(client, f"Invoice/{invoice['id']}")
    after = (invoice["meta"]["versionId"], await count(client, "PaymentReconciliation"),
             (await read(client, response_ref))["meta"]["versionId"])
    assert after == before


@pytest.mark.process
async def test_999_rejection_marks_the_claim_in_error(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    # A last name longer than the 60 characters NM103 may hold: the 837P map refuses it.
    member = await patient_with_coverage(client, world, member="M100", family="Chalmers" * 9)
    claim = (await make_bill(client, world, member["patient"]))["Claim"][0]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["outcome"] == "error"
    texts = [e["code"]["text"] for e in answer["error"]]
    assert any(t.startswith("NM1 segment") and "data element too long" in t for t in texts)
    assert "Chalmers" not in str(answer["error"])  # the 999's quoted value is not kept
    sent = [x for x in await received(clearinghouse) if x["kind"] == "837"][-1]
    assert not sent["valid"]


@pytest.mark.process
async def test_277ca_rejection_marks_the_claim_in_error(
        client: httpx.AsyncClient, clearinghouse: str, store: Store) -> None:
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, reject_members=["M404"])
    member = await patient_with_coverage(client, world, member="M404")
    claim = (await make_bill(client, world, member["patient"]))["Claim"][0]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200 and r.json()["outcome"] == "queued", r.text
    done = poll(store)
    assert done.returncode == 0, done.stderr
    response = await read(client, f"ClaimResponse/{r.json()['id']}")
    assert response["outcome"] == "error"
    codes = {c["code"] for e in response["error"] for c in e["code"]["coding"]}
    assert {"x12-277ca-rejected", "A7", "21"} <= codes
    # Polling again applies nothing twice: the cursor was kept.
    again = poll(store)
    assert again.returncode == 0 and again.stdout.strip().endswith(
        "0 applied, 0 refused, 0 failed, 0 claims asked about")
