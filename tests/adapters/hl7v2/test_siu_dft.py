"""SIU bookings and DFT charges over real MLLP, the visit's bill after A03 finishes it (the
billing worker's, from the encounter-finished event), and bad messages (AR/AE, nothing
written)."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.adapters.hl7v2.helpers import adt, field, message, mllp, pid, pv1, seg, v2_instant
from tests.adapters.hl7v2.test_adt import MRN_SYSTEM, count, one
from tests.factories import PRICES, SERVICE_SYSTEM, charge_item_definition
from tests.workflow.helpers import create, found_eventually


def siu(trigger: str, *, appt: str, mrn: str, start: str, minutes: int = 30,
        doctor: str = "D100^Osei^Ama", status: str = "", reason: str = "FU^Follow-up") -> str:
    return message(f"SIU^{trigger}^SIU_S12", [
        seg("SCH", {1: f"{appt}^GENHOSP", 7: reason, 8: "ROUTINE^Routine^HL70277",
                    11: f"^^{minutes}^{start}", 25: status}),
        pid(mrn=mrn),
        seg("AIS", {1: "1", 3: "CONS^Consultation", 4: start, 7: str(minutes), 8: "min"}),
        seg("AIP", {1: "1", 3: f"{doctor}^^^^^^GENHOSP", 4: "D"}),
        seg("AIL", {1: "1", 3: "CLINIC^101^^GENHOSP"})])


def ft1(n: int, *, code: str, quantity: str = "1", unit: str = "", txn: str = "") -> str:
    return seg("FT1", {1: str(n), 2: txn, 4: "202601051000", 5: "202601051100", 6: "CG",
                       7: f"{code}^{PRICES.get(code, ('Other',))[0]}^{SERVICE_SYSTEM}",
                       10: quantity, 12: unit, 20: "D100^Osei^Ama^^^^^^GENHOSP"})


def dft(*, mrn: str, visit: str, charges: list[str], control_id: str | None = None) -> str:
    return message("DFT^P03^DFT_P03", ["EVN|P03|20260105110000", pid(mrn=mrn), pv1(visit=visit),
                                       *charges], control_id=control_id)


async def test_booking_double_booking_reschedule_and_cancel(port: int,
                                                            client: httpx.AsyncClient) -> None:
    first = siu("S12", appt="A-1", mrn="S1", start="202601121000")
    clash = siu("S12", appt="A-2", mrn="S2", start="202601121015")
    async with mllp(port) as conn:
        booked = await conn.send(first)
        refused = await conn.send(clash)
        moved = siu("S13", appt="A-1", mrn="S1", start="202601121400", minutes=45)
        rescheduled = await conn.send(moved)
        modify = siu("S14", appt="A-1", mrn="S1", start="202601121400", minutes=45,
                     reason="PAIN^Back pain")
        modified = await conn.send(modify)
        after_modify = await one(client, "Appointment", identifier=f"{MRN_SYSTEM}|A-1")
        cancelled = await conn.send(siu("S15", appt="A-1", mrn="S1", start="202601121400",
                                        minutes=45))
    assert booked.code == "AA", booked.text
    a = await one(client, "Appointment", identifier=f"{MRN_SYSTEM}|A-1")
    assert refused.code == "AE"
    assert f"Appointment/{a['id']}" in refused.errors[0]  # the conflicting appointment
    assert "|SCH^1|" in refused.errors[0]
    assert await count(client, "Appointment") == 1  # nothing of the refused one was written
    assert await count(client, "Patient") == 1
    assert rescheduled.code == "AA" and cancelled.code == "AA" and modified.code == "AA"
    assert after_modify["status"] == "booked"
    assert after_modify["reasonCode"][0]["coding"][0]["code"] == field(modify, "SCH", 7, 1)
    assert after_modify["reasonCode"][0]["text"] == field(modify, "SCH", 7, 2)
    a = (await client.get(f"Appointment/{a['id']}")).json()
    assert a["status"] == "cancelled"
    assert a["start"] == v2_instant(field(moved, "SCH", 11, 4))
    assert a["end"] == "2026-01-12T14:45:00Z"  # SCH-11.4 + 45 minutes (AIS-7)
    actors = {p["actor"]["reference"].split("/")[0] for p in a["participant"]}
    assert actors == {"Patient", "Practitioner", "Location"}
    invoices = (await client.get("Invoice")).json()["entry"]
    assert [i["resource"]["status"] for i in invoices] == ["cancelled"]  # the booking's draft


async def test_charges_then_discharge_bill_the_visit_once(port: int,
                                                          client: httpx.AsyncClient) -> None:
    for code in PRICES:
        await create(client, charge_item_definition(code))
    charges = [ft1(1, code="OPD001", txn="T-1"), ft1(2, code="LAB025", quantity="2", txn="T-2"),
               ft1(3, code="XRAY9", unit="120.50", txn="T-3")]
    posted = dft(mrn="F1", visit="7001", charges=charges)
    async with mllp(port) as conn:
        assert (await conn.send(adt("A04", mrn="F1", visit="7001"))).code == "AA"
        ack = await conn.send(posted)
        assert ack.code == "AA", ack.text
        assert (await conn.send(dft(mrn="F1", visit="7001", charges=charges))).code == "AA"
        done = await conn.send(adt("A03", mrn="F1", visit="7001", discharged="202601051200"))
        assert done.code == "AA", done.text
        again = await conn.send(adt("A03", mrn="F1", visit="7001", discharged="202601051200"))
        assert again.code == "AA"
    items = (await client.get("ChargeItem")).json()["entry"]
    assert len(items) == 3  # the resent DFT (another MSH-10, same FT1-2) added nothing
    e = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|V7001")
    assert e["status"] == "finished"
    [invoice] = await found_eventually(client, "Invoice", {"status": "issued"})
    assert (await client.get("Invoice")).json()["total"] == 1
    assert invoice["status"] == "issued"
    expected = Decimal(0)
    for text in charges:
        code, quantity = field(text, "FT1", 7), Decimal(field(text, "FT1", 10))
        unit = Decimal(field(text, "FT1", 12)) if field(text, "FT1", 12) else PRICES[code][1]
        expected += unit * quantity
    assert Decimal(str(invoice["totalGross"]["value"])) == expected
    assert {"system": "urn:fhir-rcm-server:bill", "value": f"Encounter/{e['id']}"} in \
        invoice["identifier"]
    billed = {i["resource"]["id"] for i in items}
    assert {line["chargeItemReference"]["reference"].split("/")[1]
            for line in invoice["lineItem"]} == billed


async def test_finishing_by_fhir_write_bills_too(client: httpx.AsyncClient) -> None:
    await create(client, charge_item_definition("OPD001"))
    patient = await create(client, {"resourceType": "Patient"})
    enc = await create(client, {"resourceType": "Encounter", "status": "in-progress",
                                "class": {"code": "AMB"},
                                "subject": {"reference": f"Patient/{patient['id']}"}})
    await create(client, {"resourceType": "ChargeItem", "status": "billable",
                          "code": {"coding": [{"system": SERVICE_SYSTEM, "code": "OPD001"}]},
                          "subject": {"reference": f"Patient/{patient['id']}"},
                          "context": {"reference": f"Encounter/{enc['id']}"}})
    r = await client.put(f"Encounter/{enc['id']}", json={**enc, "status": "finished"})
    assert r.status_code == 200, r.text
    [invoice] = await found_eventually(client, "Invoice", {"subject": f"Patient/{patient['id']}"})
    assert Decimal(str(invoice["totalGross"]["value"])) == PRICES["OPD001"][1]


async def test_bad_messages_are_refused_and_write_nothing(port: int,
                                                          client: httpx.AsyncClient) -> None:
    bad_date = adt("A04", mrn="X1", visit="1", birth="1980-02-14")
    no_visit = adt("A04", mrn="X2", visit="2").replace("V2^^^GENHOSP^VN", "")
    unpriced = dft(mrn="X3", visit="3", charges=[ft1(1, code="NOPRICE")])
    async with mllp(port) as conn:
        garbage = await conn.send_raw(b"HELLO WORLD")
        date_ack = await conn.send(bad_date)
        visit_ack = await conn.send(no_visit)
        unsupported = await conn.send(message("ORU^R01^ORU_R01", [pid(mrn="X4")]))
        price_ack = await conn.send(unpriced)
        still = await conn.send(adt("A04", mrn="X5", visit="5"))  # the listener keeps serving
    assert garbage.code == "AR" and "100^Segment sequence error" in garbage.errors[0]
    assert date_ack.code == "AE" and "|PID^1^7^1|102^Data type error" in date_ack.errors[0]
    assert visit_ack.code == "AE" and "|PV1^1^19^1|101^Required field missing" in \
        visit_ack.errors[0]
    assert unsupported.code == "AR" and "200^Unsupported message type" in unsupported.errors[0]
    assert price_ack.code == "AE" and "|FT1^1^7^1|103^" in price_ack.errors[0]
    assert still.code == "AA"
    assert await count(client, "Patient") == 1
    assert await count(client, "ChargeItem") == 0
