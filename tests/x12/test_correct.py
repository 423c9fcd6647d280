"""``Claim/[id]/$correct`` over X12 (issue 29 item 3): the replacement goes to the
clearinghouse as an 837P with CLM05-3 = 7 and REF*F8 the payer's claim number (CLP07 of
the 835 that paid the original), which pyx12 accepts; the payer's next 835 reverses the
original (CLP02 22) and pays the replacement, and the Invoice counts the payment once."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.workflow.helpers import post, share
from tests.x12.edi import Paid

# The app of the X12 payer tests.
from tests.x12.test_x12_payer import received, settings_overrides  # noqa: F401
from tests.x12.world import X12, claim_lines, remittance, submitted

pytestmark = pytest.mark.process
COPAY = Decimal(30)




async def test_a_replacement_837_names_the_payers_claim_and_its_835_settles_once(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    done = await submitted(client, clearinghouse)
    claim, invoice = done["claim"], done["invoice"]
    gross = Decimal(str(invoice["totalGross"]["value"]))
    r = await client.post("PaymentReconciliation/$import-835", headers=X12, content=remittance(
        [Paid(claim["id"], claim_lines(claim, copay=COPAY), "PCN-ORIG")], "EFT-C1", 821))
    assert r.status_code == 200, r.text

    r = await post(client, f"Claim/{claim['id']}/$correct", {
        "resourceType": "Parameters", "parameter": [{"name": "frequency", "valueCode": "7"}]})
    assert r.status_code == 200, r.text
    replacement_id = r.json()["request"]["reference"].split("/")[1]
    sent = [m for m in await received(clearinghouse) if m["kind"] == "837"]
    assert len(sent) == 2 and sent[1]["valid"], sent[1].get("ack")
    found = [s.split("*") for s in sent[1]["text"].replace("\n", "").split("~") if s]
    clm = next(s for s in found if s[0] == "CLM")
    assert clm[1] == replacement_id and clm[5].split(":")[2] == "7"
    assert ["REF", "F8", "PCN-ORIG"] in found

    r = await client.post("PaymentReconciliation/$import-835", headers=X12, content=remittance(
        [Paid(claim["id"], claim_lines(claim, copay=COPAY, sign=-1), "PCN-ORIG", status="22"),
         Paid(replacement_id, claim_lines(claim, copay=COPAY), "PCN-NEW")], "EFT-C2", 822))
    assert r.status_code == 200, r.text
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == gross - COPAY and share(stored, "patient") == COPAY
