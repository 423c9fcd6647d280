"""Denials on the worklist (issue 29 item 3): an 835 that denies a line (CO-197, no
authorization, LQ*HE N54) opens a work-denial Task about that line, with the category
(authorization), the CARC and the RARC with their texts, and the amount denied; the
ClaimResponse carries the texts too. The payer's corrected payment (a reversal and a new CLP paying the
line) completes the Task. Amounts come from the claim's items."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from fhir_server.revenue.denials import CARC_TEXT, DENIAL_CATEGORY, RARC_TEXT
from tests.workflow.helpers import WORKLIST, found_eventually, share
from tests.x12.edi import Paid

# The app of the X12 payer tests.
from tests.x12.test_x12_payer import settings_overrides  # noqa: F401
from tests.x12.world import X12, claim_lines, remittance, submitted

pytestmark = pytest.mark.process
COPAY = Decimal(30)
WORK_DENIAL = f"{WORKLIST}|work-denial"




async def test_a_denied_line_waits_as_a_work_denial_task_until_the_payer_pays_it(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    claim = done["claim"]
    last = max(claim["item"], key=lambda i: i["sequence"])
    denied_amount = Decimal(str(last["net"]["value"]))
    r = await client.post("PaymentReconciliation/$import-835", headers=X12, content=remittance(
        [Paid(claim["id"], claim_lines(claim, copay=COPAY, deny_last=True), "PCN1")], "EFT-D1", 811))
    assert r.status_code == 200, r.text

    [task] = await found_eventually(client, "Task", {
        "code": WORK_DENIAL, "business-status": f"{DENIAL_CATEGORY}|authorization"})
    assert task["status"] == "failed"
    assert task["focus"] == {"reference": f"Claim/{claim['id']}"}
    assert task["for"] == claim["patient"]
    assert task["identifier"][0]["value"] == f"line:{last['sequence']}"
    reason = task["statusReason"]["text"]
    assert f"CO-197 {CARC_TEXT['197']}" in reason and f"{denied_amount:.2f}" in reason
    assert f"RARC N54: {RARC_TEXT['N54']}" in reason
    assert last["productOrService"]["coding"][0]["code"] in reason
    [response] = (await client.get("ClaimResponse", params={
        "request": f"Claim/{claim['id']}"})).json()["entry"]
    item = next(i for i in response["resource"]["item"]
                if i["itemSequence"] == last["sequence"])
    [carc] = [a["reason"]["coding"][0] for a in item["adjudication"] if "reason" in a
              and a["reason"]["coding"][0]["code"] == "197"]
    assert carc["display"] == CARC_TEXT["197"]
    notes = {n["number"]: n["text"] for n in response["resource"]["processNote"]}
    assert [notes[n] for n in item["noteNumber"]] == [f"RARC N54: {RARC_TEXT['N54']}"]
    # Only the denied line: the copay on the first is not a denial.
    assert len((await client.get("Task", params={"code": WORK_DENIAL})).json()["entry"]) == 1

    # The payer reverses that payment and pays the line after all.
    r = await client.post("PaymentReconciliation/$import-835", headers=X12, content=remittance(
        [Paid(claim["id"], claim_lines(claim, copay=COPAY, deny_last=True, sign=-1), "PCN1", status="22"),
         Paid(claim["id"], claim_lines(claim, copay=COPAY), "PCN1")], "EFT-D2", 812))
    assert r.status_code == 200, r.text
    [task] = await found_eventually(client, "Task", {"code": WORK_DENIAL,
                                                     "status": "completed"})
    assert task["output"][0]["valueReference"]["reference"] == response["resource"][
        "resourceType"] + "/" + response["resource"]["id"]
    invoice = (await client.get(f"Invoice/{done['invoice']['id']}")).json()
    assert share(invoice, "patient") == COPAY
