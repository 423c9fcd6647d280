"""ADT messages over real MLLP: registration, update, discharge, cancel, merge; the
resources read back over FHIR with values computed from the message text."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.adapters.hl7v2.helpers import (
    SENDER,
    adt,
    field,
    gt1,
    in1,
    mllp,
    v2_date,
    v2_instant,
)
from tests.support.store import ClientFor


async def one(client: httpx.AsyncClient, type_: str, **params: str) -> dict[str, Any]:
    r = await client.get(type_, params=params)
    assert r.status_code == 200, r.text
    entries = r.json().get("entry", [])
    assert len(entries) == 1, (type_, params, len(entries))
    resource: dict[str, Any] = entries[0]["resource"]
    return resource


async def count(client: httpx.AsyncClient, type_: str, **params: str) -> int:
    r = await client.get(type_, params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


MRN_SYSTEM = "urn:hl7v2:authority:GENHOSP"


@pytest.mark.slow
async def test_a04_registers_patient_visit_coverage_and_guarantor(
        port: int, client: httpx.AsyncClient) -> None:
    text = adt("A04", mrn="M1001", visit="5001", insurance=[in1()], guarantor=gt1())
    async with mllp(port) as conn:
        ack = await conn.send(text)
    assert ack.code == "AA", ack.text
    assert ack.control_id == field(text, "MSH", 10)
    assert not ack.errors

    mrn = field(text, "PID", 3)
    p = await one(client, "Patient", identifier=f"{MRN_SYSTEM}|{mrn}")
    assert {"system": "urn:hl7v2:authority:SSA", "value": field(text, "PID", 3, 1, 2),
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                 "code": field(text, "PID", 3, 5, 2)}]}} in p["identifier"]
    assert p["name"][0]["family"] == field(text, "PID", 5, 1)
    assert p["name"][0]["given"] == [field(text, "PID", 5, 2), field(text, "PID", 5, 3)]
    assert p["birthDate"] == v2_date(field(text, "PID", 7))
    assert p["gender"] == {"M": "male", "F": "female"}[field(text, "PID", 8)]
    address = p["address"][0]
    assert address["line"] == [field(text, "PID", 11, 1), field(text, "PID", 11, 2)]
    assert (address["city"], address["state"], address["postalCode"], address["use"]) == (
        field(text, "PID", 11, 3), field(text, "PID", 11, 4), field(text, "PID", 11, 5),
        "home")
    phones = {(t["system"], t.get("use"), t["value"]) for t in p["telecom"]}
    assert ("phone", "home", field(text, "PID", 13, 6) + field(text, "PID", 13, 7)) in phones
    assert ("email", "home", field(text, "PID", 13, 4, 2)) in phones
    assert ("phone", "work", field(text, "PID", 14, 6) + field(text, "PID", 14, 7)) in phones

    e = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|{field(text, 'PV1', 19)}")
    assert e["status"] == "planned"  # A04, per the IG's HL70003 map
    assert e["class"]["code"] == {"O": "AMB", "I": "IMP"}[field(text, "PV1", 2)]
    assert e["subject"]["reference"] == f"Patient/{p['id']}"
    assert e["period"]["start"] == v2_instant(field(text, "PV1", 44))
    doc_ref = e["participant"][0]["individual"]["reference"]
    assert e["participant"][0]["type"][0]["coding"][0]["code"] == "ATND"
    doc = (await client.get(doc_ref)).json()
    assert doc["identifier"] == [{"system": f"urn:hl7v2:authority:{field(text, 'PV1', 7, 9)}",
                                  "value": field(text, "PV1", 7, 1)}]
    assert doc["name"][0]["family"] == field(text, "PV1", 7, 2)
    room = (await client.get(e["location"][0]["location"]["reference"])).json()
    assert room["name"] == " ".join(field(text, "PV1", 3, c) for c in (1, 2, 3))

    cov = await one(client, "Coverage", identifier=f"urn:hl7v2:authority:ACME|"
                                                   f"{field(text, 'IN1', 49)}")
    assert cov["subscriberId"] == field(text, "IN1", 49)
    assert cov["beneficiary"]["reference"] == f"Patient/{p['id']}"
    assert cov["period"] == {"start": v2_date(field(text, "IN1", 12)),
                             "end": v2_date(field(text, "IN1", 13))}
    assert cov["relationship"]["coding"][0]["code"] == "self"
    assert cov["subscriber"]["reference"] == f"Patient/{p['id']}"
    plan = next(c for c in cov["class"] if c["type"]["coding"][0]["code"] == "plan")
    assert (plan["value"], plan["name"]) == (field(text, "IN1", 2), field(text, "IN1", 2, 2))
    payer = (await client.get(cov["payor"][0]["reference"])).json()
    assert payer["name"] == field(text, "IN1", 4)
    assert payer["identifier"][0]["value"] == field(text, "IN1", 3)

    rp = await one(client, "RelatedPerson", patient=f"Patient/{p['id']}")
    assert rp["name"][0]["family"] == field(text, "GT1", 3)
    assert rp["birthDate"] == v2_date(field(text, "GT1", 8))
    assert rp["identifier"][0]["value"] == field(text, "GT1", 2)
    assert {c["code"] for c in rp["relationship"][0]["coding"]} == {"GUAR",
                                                                    field(text, "GT1", 11)}


async def test_same_message_twice_changes_nothing(port: int, client: httpx.AsyncClient,
                                                  app: Any, client_for: ClientFor) -> None:
    text = adt("A04", mrn="M2002", visit="5002", insurance=[in1(member="M-2")])
    async with mllp(port) as conn:
        first = await conn.send(text)
        again = await conn.send(text)  # the same MSH-10
        resent = await conn.send(text.replace(field(text, "MSH", 10), "OTHER-ID-1"))
    assert (first.code, again.code, resent.code) == ("AA", "AA", "AA")
    assert again.control_id == first.control_id
    for type_ in ("Patient", "Encounter", "Coverage", "Organization", "Practitioner",
                  "Location"):
        r = (await client.get(type_)).json()
        assert r["total"] == 1, type_
        assert r["entry"][0]["resource"]["meta"]["versionId"] == "1", type_
    await app.state.audit.flush()
    auditor = await client_for("system/AuditEvent.rs")
    audited = (await auditor.get("AuditEvent", params={"type": "110107"})).json()
    senders = {a["who"]["identifier"]["value"] for e in audited["entry"]
               for a in e["resource"]["agent"]}
    assert senders == {"^".join(SENDER)}
    assert audited["total"] == 3


async def test_a08_updates_what_it_carries_and_a03_finishes(port: int,
                                                             client: httpx.AsyncClient) -> None:
    async with mllp(port) as conn:
        assert (await conn.send(adt("A01", mrn="M3003", visit="5003",
                                    patient_class="I"))).code == "AA"
        update = adt("A08", mrn="M3003", visit="5003", street="77 Birch Ave", patient_class="I")
        assert (await conn.send(update)).code == "AA"
        discharge = adt("A03", mrn="M3003", visit="5003", patient_class="I",
                        street="77 Birch Ave", discharged="202601081030")
        done = await conn.send(discharge)
        assert done.code == "AA", done.text
    p = await one(client, "Patient", identifier=f"{MRN_SYSTEM}|M3003")
    assert p["address"][0]["line"][0] == field(update, "PID", 11, 1)
    assert p["meta"]["versionId"] == "2"
    e = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|V5003")
    assert e["status"] == "finished"
    assert e["period"] == {"start": v2_instant(field(discharge, "PV1", 44)),
                           "end": v2_instant(field(discharge, "PV1", 45))}
    history = (await client.get(f"Encounter/{e['id']}/_history")).json()
    # A01 in-progress; A08 kept it (no change: no new version); A03 finished.
    assert [v["resource"]["status"] for v in history["entry"]] == ["finished", "in-progress"]


async def test_a11_cancels_and_unknown_visit_is_refused(port: int,
                                                        client: httpx.AsyncClient) -> None:
    async with mllp(port) as conn:
        assert (await conn.send(adt("A04", mrn="M4004", visit="5004"))).code == "AA"
        assert (await conn.send(adt("A11", mrn="M4004", visit="5004"))).code == "AA"
        unknown = await conn.send(adt("A03", mrn="M4004", visit="9999",
                                      discharged="202601081030"))
    e = await one(client, "Encounter", identifier=f"{MRN_SYSTEM}|V5004")
    assert e["status"] == "cancelled"
    assert unknown.code == "AE"
    assert "|PV1^1|204^Unknown key identifier^HL70357|E|" in unknown.errors[0]
    assert await count(client, "Encounter") == 1


async def test_a40_is_recorded_and_answered_ae(port: int, client: httpx.AsyncClient) -> None:
    text = adt("A40", mrn="M5005", visit="5005")
    async with mllp(port) as conn:
        ack = await conn.send(text)
        again = await conn.send(text)
    assert (ack.code, again.code) == ("AE", "AE")
    assert "201^Unsupported event code" in ack.errors[0]
    assert again.errors == ack.errors  # recorded: answered the same way
    assert await count(client, "Patient") == 0


@pytest.mark.slow
async def test_burst_of_200_from_four_connections(port: int, client: httpx.AsyncClient) -> None:
    texts = [adt("A04", mrn=f"B{n:04d}", visit=f"9{n:04d}", given=f"Given{n}",
                 insurance=[in1(member=f"BM-{n}")]) for n in range(200)]

    async def sender(share: list[str]) -> list[str]:
        async with mllp(port) as conn:
            return [(a.code if a.code == "AA" else a.text) for t in share if (a := await conn.send(t))]

    codes = await asyncio.gather(*(sender(texts[i::4]) for i in range(4)))
    assert [c for batch in codes for c in batch] == ["AA"] * 200
    assert await count(client, "Patient") == 200
    assert await count(client, "Encounter") == 200
    assert await count(client, "Coverage") == 200
    # The same doctor, payer and room in every message: one of each, not 200.
    for type_ in ("Practitioner", "Organization", "Location"):
        assert await count(client, type_) == 1, type_
    for n in (0, 77, 199):
        p = await one(client, "Patient", identifier=f"{MRN_SYSTEM}|B{n:04d}")
        assert p["name"][0]["given"][0] == field(texts[n], "PID", 5, 2)
