"""Primary, then secondary, then the patient, over X12 (issue 29 item 2): the primary's
835 leaves the copay; the next-payer worker bills it to the secondary payer in an 837P
whose other-subscriber loops (2320/2330A/2330B, and 2430 per line) carry what the primary
paid and adjusted, valid for pyx12 at the loopback clearinghouse; the secondary's 835
(CARC 23 for the primary's part) pays the copay, and the Invoice is balanced. Expected
segments and amounts come from the claim's items and the 835s the test sends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.workflow.helpers import create, found_eventually, post, share
from tests.x12.edi import Line, remittance_835

# The app of the X12 payer tests.
from tests.x12.test_x12_payer import configure, received, settings_overrides  # noqa: F401
from tests.x12.world import (
    CLINIC_NPI,
    PAYER_ID,
    PAYER_TIN,
    PLAN,
    X12,
    patient_with_coverage,
    remit_for,
    setup_clinic,
)
from tests.x12.world import bill as make_bill

pytestmark = pytest.mark.process
COPAY = Decimal(30)  # what the primary's 835 leaves (CAS*PR*3 on the first line)
SECOND_PAYER_ID = "BETA1"


def segments(text: str) -> list[list[str]]:
    return [s.split("*") for s in text.replace("\n", "").split("~") if s]


def money(value: Decimal) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text or "0"


async def second_payer(client: httpx.AsyncClient, world: dict[str, Any]) -> str:
    payer = (await client.get(world["payer"])).json()
    body = {k: v for k, v in payer.items() if k not in ("id", "meta")}
    body["name"] = "Beta Care"
    body["identifier"] = [{**payer["identifier"][0], "value": SECOND_PAYER_ID}]
    return f"Organization/{(await create(client, body))['id']}"


async def test_the_secondary_837_carries_the_primary_and_its_835_balances_the_bill(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M100": PLAN, "M200": PLAN})
    member = await patient_with_coverage(client, world, member="M100")
    primary = {**member["coverage"], "order": 1}
    assert (await client.put(f"Coverage/{primary['id']}", json=primary)).status_code == 200
    secondary = await create(client, {
        **{k: v for k, v in primary.items() if k not in ("id", "meta")},
        "subscriberId": "M200", "order": 2,
        "payor": [{"reference": await second_payer(client, world)}]})
    billed = await make_bill(client, world, member["patient"])
    [claim], [invoice] = billed["Claim"], billed["Invoice"]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text

    first_835 = remit_for(claim, trace="EFT-PRIMARY", copay=COPAY)
    r = await client.post("PaymentReconciliation/$import-835", headers=X12,
                          content=first_835.encode())
    assert r.status_code == 200, r.text
    gross = Decimal(str(invoice["totalGross"]["value"]))
    primary_paid = gross - COPAY

    # The next claim goes out to the secondary payer: an 837P valid for pyx12.
    [after] = [c for c in await found_eventually(
        client, "Claim", {"patient": f"Patient/{member['patient']['id']}"}, total=2)
        if c["id"] != claim["id"]]
    assert after["insurance"][1]["coverage"] == {"reference": f"Coverage/{secondary['id']}"}
    sent = [m for m in await received(clearinghouse) if m["kind"] == "837"]
    assert len(sent) == 2, [m.get("ack") for m in sent]
    assert sent[1]["valid"], sent[1].get("ack")
    found = segments(sent[1]["text"])
    sbrs = [s for s in found if s[0] == "SBR"]
    assert [s[1] for s in sbrs] == ["S", "P"]  # 2000B the secondary, 2320 the primary
    assert ["AMT", "D", money(primary_paid)] in found
    assert ["OI", "", "", "Y", "", "", "Y"] in found
    names = [s for s in found if s[0] == "NM1" and s[1] in ("IL", "PR")]
    assert [(s[1], s[-1]) for s in names] == [
        ("IL", "M200"), ("PR", SECOND_PAYER_ID), ("IL", "M100"), ("PR", PAYER_ID)]
    items = sorted(claim["item"], key=lambda i: i["sequence"])
    svds = [s for s in found if s[0] == "SVD"]
    paid = [Decimal(str(i["net"]["value"])) - (COPAY if n == 0 else 0)
            for n, i in enumerate(items)]
    assert [(s[1], s[2], s[3]) for s in svds] == [
        (PAYER_ID, money(p), f"HC:{i['productOrService']['coding'][0]['code']}")
        for p, i in zip(paid, items, strict=True)]
    assert ["CAS", "PR", "3", money(COPAY)] in found
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert sum(s[:3] == ["DTP", "573", "D8"] and s[3] == today for s in found) == len(items)
    clm01 = next(s for s in found if s[0] == "CLM")[1]

    # The secondary pays the copay; the primary's part is CAS*OA*23 on its 835.
    lines = [Line(i["productOrService"]["coding"][0]["code"], Decimal(str(i["net"]["value"])),
                  COPAY if n == 0 else Decimal(0), str(i["sequence"]),
                  prior=p) for n, (i, p) in enumerate(zip(items, paid, strict=True))]
    second_835 = remittance_835(claim_id=clm01, lines=lines, payer_id=SECOND_PAYER_ID,
                                payer_tax=PAYER_TIN, payee_npi=CLINIC_NPI, trace="EFT-SECOND",
                                member="M200", on=datetime.now(UTC).date(), control=701)
    r = await client.post("PaymentReconciliation/$import-835", headers=X12,
                          content=second_835.encode())
    assert r.status_code == 200, r.text
    stored = (await client.get(f"Invoice/{invoice['id']}")).json()
    assert share(stored, "insurer") == primary_paid + COPAY == gross
    assert share(stored, "adjustment") == 0 and share(stored, "patient") == 0
    assert stored["status"] == "balanced"


async def test_a_secondary_837_after_a_fhir_primary_turns_its_adjudication_into_cas(
        client: httpx.AsyncClient, clearinghouse: str) -> None:
    """The primary is this server as the payer (its Coverage's copay and deductible), the
    secondary the X12 payer: each 2430 line balances, the charge being what the primary
    paid plus its CAS (PR*3 copay, PR*1 deductible), and AMT*D is its payment."""
    world = await setup_clinic(client, clearinghouse)
    await configure(clearinghouse, members={"M200": PLAN})
    member = await patient_with_coverage(client, world, member="M200")
    secondary = {**member["coverage"], "order": 2}
    assert (await client.put(f"Coverage/{secondary['id']}", json=secondary)).status_code == 200
    payer = (await client.get(world["payer"])).json()
    own = await create(client, {"resourceType": "Organization", "name": "Local Plan",
                                "identifier": [{**payer["identifier"][0], "value": "LOCAL1"}]})
    year = datetime.now(UTC).year
    cost = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
    await create(client, {
        "resourceType": "Coverage", "status": "active", "subscriberId": "L-1", "order": 1,
        "beneficiary": {"reference": f"Patient/{member['patient']['id']}"},
        "relationship": secondary["relationship"],
        "payor": [{"reference": f"Organization/{own['id']}"}],
        "period": {"start": f"{year}-01-01", "end": f"{year}-12-31"},
        "costToBeneficiary": [
            {"type": {"coding": [{"system": cost, "code": "gpvisit"}]},
             "valueMoney": {"value": COPAY, "currency": "USD"}},
            {"type": {"coding": [{"system": cost, "code": "deductible"}]},
             "valueMoney": {"value": 100, "currency": "USD"}}]})
    billed = await make_bill(client, world, member["patient"])
    [claim] = billed["Claim"]
    r = await post(client, "Claim/$submit", claim)
    assert r.status_code == 200, r.text
    first = r.json()

    sent = [m for m in await received(clearinghouse) if m["kind"] == "837"]
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.1)
        sent = [m for m in await received(clearinghouse) if m["kind"] == "837"]
    [message] = sent
    assert message["valid"], message.get("ack")
    found = segments(message["text"])
    assert ["AMT", "D", money(Decimal(str(first["payment"]["amount"]["value"])))] in found
    charges = [Decimal(s[2]) for s in found if s[0] == "SV1"]
    lines: list[tuple[Decimal, Decimal]] = []  # (paid, adjusted) per 2430
    for s in found:
        if s[0] == "SVD":
            lines.append((Decimal(s[2]), Decimal(0)))
        elif s[0] == "CAS" and lines:
            paid, adjusted = lines[-1]
            lines[-1] = (paid, adjusted + sum(Decimal(a) for a in s[3::3]))
    assert [p + a for p, a in lines] == charges
    item_paid = {i["itemSequence"]: next(Decimal(str(a["amount"]["value"]))
                                         for a in i["adjudication"]
                                         if a["category"]["coding"][0]["code"] == "benefit")
                 for i in first["item"]}
    assert [p for p, _ in lines] == [item_paid[n] for n in sorted(item_paid)]
    assert ["CAS", "PR", "3", money(COPAY), "", "1", "100"] in found
