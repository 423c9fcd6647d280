"""The post-remittance step's worklist over REST: an 835 paying three claims (one this
server sent, one whose Claim is not stored, one that does not balance) posts the first and
sets the other two aside, each as its own failed post-remittance Task about the kept 835
saying what does not match; ``$retry`` once the Claim is stored again posts its payment
and completes its Task, while the unbalanced one stays failed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from fhir_server.adapters.x12.remittance import (
    Adjustment,
    ClaimPayment,
    ServicePayment,
    imbalance,
)
from tests.factories import (
    PRICES,
    bill_parameters,
    charge_item_definition,
    coverage,
    patient,
    payer_org,
    service,
)
from tests.workflow.helpers import (
    WORKLIST,
    by_type,
    create,
    post,
    requested,
    settings_overrides,  # noqa: F401 (the fixture, used by name)
    share,
)
from tests.x12.edi import Line, Paid, money, remittance_835_claims

POST_REMITTANCE = f"{WORKLIST}|post-remittance"
FAMILY = "Remitpatient"  # health data that must not reach statusReason
YEAR = datetime.now(UTC).year
PAYER_ID, PAYER_TAX, CLINIC_NPI = "ACME1", "987654321", "1234567893"
X12 = {"Content-Type": "application/edi-x12"}
COPAY = Decimal(30)


async def three_claims(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], str]:
    """Three bills of one insured patient: (their Claims, the patient)."""
    for code in PRICES:
        await create(client, charge_item_definition(code))
    r = await client.put("Organization/clinic",
                         json={"resourceType": "Organization", "id": "clinic", "name": "Clinic"})
    assert r.status_code in (200, 201), r.text
    org = await create(client, payer_org("Acme Health", PAYER_ID))
    pat = await create(client, patient(family=FAMILY))
    await create(client, coverage(patient=f"Patient/{pat['id']}",
                                  payer=f"Organization/{org['id']}", member_id="M-1",
                                  start=f"{YEAR}-01-01", end=f"{YEAR}-12-31"))
    claims = []
    for _ in range(3):
        r = await post(client, "Invoice/$generate-bill", bill_parameters(
            f"Patient/{pat['id']}", [service(code) for code in PRICES]))
        assert r.status_code == 200, r.text
        claims += by_type(r.json())["Claim"]
    return claims, f"Patient/{pat['id']}"


def paid(claim: dict[str, Any], payer_claim: str, *, off: Decimal = Decimal(0)) -> Paid:
    """The payer pays each line but a copay on the first; ``off`` makes CLP04 differ."""
    lines = [Line(i["productOrService"]["coding"][0]["code"], Decimal(str(i["net"]["value"])),
                  Decimal(str(i["net"]["value"])) - (COPAY if n == 0 else 0), str(i["sequence"]),
                  COPAY if n == 0 else Decimal(0)) for n, i in enumerate(claim["item"])]
    payment = Paid(claim["id"], lines, payer_claim)
    return Paid(claim["id"], lines, payer_claim, claim_paid=payment.paid - off) if off else payment


async def tasks(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    r = await client.get("Task", params={"code": POST_REMITTANCE, **params})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def insurer_paid(client: httpx.AsyncClient, claim: dict[str, Any]) -> Decimal:
    """What the insurer has paid of the claim's bill (no share yet: nothing)."""
    ref = next(i["value"] for i in claim["identifier"]
               if i["system"] == "urn:fhir-rcm-server:invoice")
    invoice = (await client.get(ref)).json()
    try:
        return share(invoice, "insurer")
    except KeyError:
        return Decimal(0)


async def test_claim_payments_that_cannot_be_posted_wait_and_are_retried(
        client: httpx.AsyncClient) -> None:
    (ours, late, unbalanced), patient_ref = await three_claims(client)
    payments = [paid(ours, "PCN-1"), paid(late, "PCN-2"), paid(unbalanced, "PCN-3",
                                                               off=Decimal(10))]
    text = remittance_835_claims(claims=payments, payer_id=PAYER_ID, payer_tax=PAYER_TAX,
                                 payee_npi=CLINIC_NPI, trace="EFT77", member="M-1",
                                 on=datetime.now(UTC).date(), control=901)
    # The late claim is not stored when its payment arrives.
    r = await client.delete(f"Claim/{late['id']}")
    assert r.status_code in (200, 204), r.text

    r = await client.post("PaymentReconciliation/$import-835", content=text.encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    out = {p["name"]: p["resource"] for p in r.json()["parameter"]}
    reconciliation = out["paymentReconciliation"]
    total = sum((p.paid for p in payments), Decimal(0))
    assert Decimal(str(reconciliation["paymentAmount"]["value"])) == total
    details = reconciliation["detail"]
    assert [d["identifier"]["value"] for d in details] == [c["id"] for c in
                                                          (ours, late, unbalanced)]
    assert details[0]["request"] == {"reference": f"Claim/{ours['id']}"}
    assert "request" not in details[1] and "request" not in details[2]
    r = await client.get("DocumentReference", params={
        "related": f"PaymentReconciliation/{reconciliation['id']}"})
    [document] = [e["resource"] for e in r.json()["entry"]]

    # Two Tasks, one per claim payment set aside, both about the kept 835.
    failed = await tasks(client, status="failed")
    assert len(failed) == 2
    by_claim = {t["identifier"][0]["value"].split(":", 1)[1]: t for t in failed}
    waiting, wrong = by_claim[late["id"]], by_claim[unbalanced["id"]]
    warnings = [i["diagnostics"] for i in out["outcome"]["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 2
    for task in (waiting, wrong):
        assert task["focus"] == {"reference": f"DocumentReference/{document['id']}"}
        assert any(f"Task/{task['id']}" in w for w in warnings)
        [outcome] = task["contained"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert task["output"] == [{"type": {"text": "OperationOutcome"},
                                   "valueReference": {"reference": f"#{outcome['id']}"}}]
        assert FAMILY not in str(task)
    reason = waiting["statusReason"]["text"]
    assert late["id"] in reason and "PCN-2" in reason and f"pays {payments[1].paid:.2f}" in reason
    assert "for" not in waiting  # no Claim: no patient known
    reason = wrong["statusReason"]["text"]
    charge, clp04 = payments[2].charge, payments[2].paid
    assert unbalanced["id"] in reason and "PCN-3" in reason
    assert all(f"{v:.2f}" in reason for v in (charge, clp04, charge - clp04, COPAY)), reason
    assert wrong["for"] == {"reference": patient_ref}

    # Only the claim this server sent is posted.
    assert await insurer_paid(client, ours) == payments[0].paid
    for claim in (late, unbalanced):
        assert await insurer_paid(client, claim) == 0
    assert (await client.get("ClaimResponse")).json()["total"] == 1

    # The same 835 again changes nothing, and opens no Task.
    r = await client.post("PaymentReconciliation/$import-835", content=text.encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    assert len(await tasks(client)) == 2

    # The unbalanced payment is retried as it is: still failed, the same Task.
    r = await post(client, f"Task/{wrong['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["status"] == "failed" and again["id"] == wrong["id"]
    assert again["statusReason"] == wrong["statusReason"]
    assert int(again["meta"]["versionId"]) == int(wrong["meta"]["versionId"]) + 1

    # The late Claim is stored again: its retry posts the payment and completes the Task.
    stored = {k: v for k, v in late.items() if k != "meta"}
    r = await client.put(f"Claim/{late['id']}", json=stored)
    assert r.status_code in (200, 201), r.text
    r = await post(client, f"Task/{waiting['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and "statusReason" not in done
    r = await client.get("ClaimResponse", params={"request": f"Claim/{late['id']}"})
    [response] = [e["resource"] for e in r.json()["entry"]]
    assert done["output"] == [{"type": {"text": "ClaimResponse"}, "valueReference": {
        "reference": f"ClaimResponse/{response['id']}"}}]
    assert Decimal(str(response["payment"]["amount"]["value"])) == payments[1].paid
    assert await insurer_paid(client, late) == payments[1].paid
    now = (await client.get(f"PaymentReconciliation/{reconciliation['id']}")).json()
    assert now["detail"][1]["request"] == {"reference": f"Claim/{late['id']}"}
    assert "request" not in now["detail"][2]
    assert [t["id"] for t in await tasks(client, status="failed")] == [wrong["id"]]
    assert len(await tasks(client)) == 2
    # A completed Task is not retried.
    r = await post(client, f"Task/{waiting['id']}/$retry", {"resourceType": "Parameters"})
    assert r.status_code == 422, r.text
    assert (await client.get("ClaimResponse")).json()["total"] == 2


async def test_a_post_remittance_task_set_to_requested_posts_the_payment_again(
        client: httpx.AsyncClient) -> None:
    (ours, late, _), _ = await three_claims(client)
    payments = [paid(ours, "PCN-1"), paid(late, "PCN-2")]
    text = remittance_835_claims(claims=payments, payer_id=PAYER_ID, payer_tax=PAYER_TAX,
                                 payee_npi=CLINIC_NPI, trace="EFT78", member="M-1",
                                 on=datetime.now(UTC).date(), control=902)
    r = await client.delete(f"Claim/{late['id']}")
    assert r.status_code in (200, 204), r.text
    r = await client.post("PaymentReconciliation/$import-835", content=text.encode(),
                          headers=X12)
    assert r.status_code == 200, r.text
    [waiting] = await tasks(client, status="failed")
    # Requested while the Claim is still gone: the worker fails it again, same reason.
    again = await requested(client, waiting["id"])
    assert again["status"] == "failed"
    assert again["statusReason"] == waiting["statusReason"]
    assert await insurer_paid(client, late) == 0
    # The Claim is stored again: requested, the worker posts the payment.
    stored = {k: v for k, v in late.items() if k != "meta"}
    r = await client.put(f"Claim/{late['id']}", json=stored)
    assert r.status_code in (200, 201), r.text
    done = await requested(client, waiting["id"])
    assert done["status"] == "completed" and "statusReason" not in done
    r = await client.get("ClaimResponse", params={"request": f"Claim/{late['id']}"})
    [response] = [e["resource"] for e in r.json()["entry"]]
    assert done["output"] == [{"type": {"text": "ClaimResponse"}, "valueReference": {
        "reference": f"ClaimResponse/{response['id']}"}}]
    assert await insurer_paid(client, late) == payments[1].paid
    assert await tasks(client, status="failed") == []


async def test_a_payment_whose_total_does_not_add_up_is_refused_whole(
        client: httpx.AsyncClient) -> None:
    (ours, other, _), _ = await three_claims(client)
    payments = [paid(ours, "PCN-1"), paid(other, "PCN-2")]
    text = remittance_835_claims(claims=payments, payer_id=PAYER_ID, payer_tax=PAYER_TAX,
                                 payee_npi=CLINIC_NPI, trace="EFT78", member="M-1",
                                 on=datetime.now(UTC).date(), control=902)
    total = sum((p.paid for p in payments), Decimal(0))
    text = text.replace(f"BPR*I*{money(total)}*", f"BPR*I*{money(total + 5)}*", 1)
    r = await client.post("PaymentReconciliation/$import-835", content=text.encode(),
                          headers=X12)
    assert r.status_code == 400 and "BPR02" in r.json()["issue"][0]["diagnostics"], r.text
    for type_ in ("PaymentReconciliation", "ClaimResponse", "DocumentReference", "Task"):
        assert (await client.get(type_)).json()["total"] == 0, type_


def test_an_unbalanced_service_line_is_named_with_its_amounts() -> None:
    charge, paid, copay = Decimal("250"), Decimal("200"), Decimal("30")
    service = ServicePayment("HC", "LAB025", [], charge, paid, None,
                             adjustments=[Adjustment("PR", "3", copay)])
    payment = ClaimPayment("C-1", "1", charge, paid, copay, "PCN-9", 30,
                           adjustments=[Adjustment("CO", "45", charge - paid - copay)],
                           services=[service])
    reason = imbalance(payment)
    assert reason is not None and "service line 1 (LAB025)" in reason
    assert all(f"{v:.2f}" in reason for v in (charge, paid, charge - paid, copay)), reason
    service.adjustments.append(Adjustment("CO", "45", charge - paid - copay))
    payment.adjustments.clear()
    assert imbalance(payment) is None
