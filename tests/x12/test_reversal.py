"""835 reversals (CLP02 22, issue 29 item 3): a reversal is netted with the payment it
reverses, not posted as the claim's latest adjudication. A reversal followed by the payer's
corrected payment leaves the Invoice as the correction says; a reversal alone leaves the
claim waiting for the correction, the insurer's share back to nothing; a reversal of a
claim with no posted payment is set aside on the worklist. Amounts come from the claims'
items and the 835s the test sends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.workflow.helpers import WORKLIST, post, share
from tests.x12.edi import Paid

# The app of the X12 payer tests.
from tests.x12.test_x12_payer import settings_overrides  # noqa: F401
from tests.x12.world import X12, claim_lines, remittance, submitted
from tests.x12.world import bill as make_bill

pytestmark = pytest.mark.process




async def imported(client: httpx.AsyncClient, text: bytes) -> dict[str, Any]:
    r = await client.post("PaymentReconciliation/$import-835", headers=X12, content=text)
    assert r.status_code == 200, r.text
    return {p["name"]: p["resource"] for p in r.json()["parameter"]}


async def test_a_reversal_nets_with_the_payment_it_reverses(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    claim, invoice = done["claim"], done["invoice"]
    gross = Decimal(str(invoice["totalGross"]["value"]))
    wrong, right = Decimal(50), Decimal(30)  # the copay the payer first took, then corrected
    await imported(client, remittance([Paid(claim["id"], claim_lines(claim, copay=wrong), "PCN1")],
                                      "EFT-1", 801))
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == gross - wrong

    # One 835: the reversal of that payment, then the corrected one.
    await imported(client, remittance([
        Paid(claim["id"], claim_lines(claim, copay=wrong, sign=-1), "PCN1", status="22"),
        Paid(claim["id"], claim_lines(claim, copay=right), "PCN1")], "EFT-2", 802))
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == gross - right
    assert share(stored, "patient") == right
    [response] = (await client.get("ClaimResponse", params={
        "request": f"Claim/{claim['id']}"})).json()["entry"]
    assert response["resource"]["outcome"] == "complete"
    assert Decimal(str(response["resource"]["payment"]["amount"]["value"])) == gross - right

    # A reversal alone (with another claim's payment in the same 835): the claim waits for
    # the correction, and the Invoice counts nothing of the reversed payment.
    other = await make_bill(client, done["world"], {"id": claim["patient"]["reference"]
                                                    .split("/")[1]})
    [second] = other["Claim"]
    r = await post(client, "Claim/$submit", second)
    assert r.status_code == 200, r.text
    await imported(client, remittance([
        Paid(claim["id"], claim_lines(claim, copay=right, sign=-1), "PCN1", status="22"),
        Paid(second["id"], claim_lines(second, copay=right), "PCN2")], "EFT-3", 803))
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == 0 and share(stored, "patient") == gross
    response = (await client.get(f"ClaimResponse/{response['resource']['id']}")).json()
    assert response["outcome"] == "queued"
    assert Decimal(str(response["payment"]["amount"]["value"])) == 0
    assert "Reversal" in response["disposition"]
    second_invoice = (await client.get(f"Invoice/{other['Invoice'][0]['id']}")).json()
    assert share(second_invoice, "patient") == right


async def test_a_reversal_of_a_claim_never_paid_waits_on_the_worklist(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    claim, invoice = done["claim"], done["invoice"]
    other = await make_bill(client, done["world"], {"id": claim["patient"]["reference"]
                                                    .split("/")[1]})
    [second] = other["Claim"]
    assert (await post(client, "Claim/$submit", second)).status_code == 200
    out = await imported(client, remittance([
        Paid(claim["id"], claim_lines(claim, copay=Decimal(30), sign=-1), "PCN1", status="22"),
        Paid(second["id"], claim_lines(second, copay=Decimal(0)), "PCN2")], "EFT-4", 804))
    warnings = [i for i in out["outcome"]["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 1 and "no posted payment to reverse" in warnings[0]["diagnostics"]
    tasks = (await client.get("Task", params={"code": f"{WORKLIST}|post-remittance"})).json()
    assert [e["resource"]["status"] for e in tasks["entry"]] == ["failed"]
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert stored["status"] == "issued"
    assert [c["amount"]["value"] for c in stored.get("totalPriceComponent", [])
            if c["code"]["coding"][0]["code"] == "insurer"] in ([], [0])


async def test_a_payment_recorded_by_hand_that_the_835_reports_is_not_counted_twice(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    """The billing office records the insurer's payment from its paper EOB; the 835 then
    reports the same payment: the Invoice shows it once, and the hand-recorded payment is
    marked matched to the ClaimResponse (a later 835 does not match it again)."""
    done = await submitted(client, clearinghouse)
    claim, invoice = done["claim"], done["invoice"]
    gross = Decimal(str(invoice["totalGross"]["value"]))
    copay = Decimal(30)
    r = await post(client, f"Invoice/{invoice['id']}/$record-payment", {
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": {"value": gross - copay, "currency": "USD"}},
            {"name": "method", "valueCode": "CHCK"},
            {"name": "payer", "valueReference": {"reference": done["world"]["payer"]}}]})
    assert r.status_code == 200, r.text
    by_hand = next(p["resource"] for p in r.json()["parameter"]
                   if p["name"] == "paymentReconciliation")
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == gross - copay

    await imported(client, remittance([Paid(claim["id"], claim_lines(claim, copay=copay), "PCN9")],
                                      "EFT-HAND", 805))
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == gross - copay and share(stored, "patient") == copay
    matched = (await client.get(f"PaymentReconciliation/{by_hand['id']}")).json()
    [response] = (await client.get("ClaimResponse", params={
        "request": f"Claim/{claim['id']}"})).json()["entry"]
    assert matched["detail"][0]["response"] == {
        "reference": f"ClaimResponse/{response['resource']['id']}"}
