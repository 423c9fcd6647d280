"""ADT messages: A01 admit, A04 register, A08 update, A03 discharge, A11 cancel admit,
A40 merge (recorded, not applied).

PID -> Patient, PV1 -> Encounter (``segments.py``); each IN1 -> Coverage with its payor
Organization (IN1-3 identifier, IN1-4 name); each GT1 -> RelatedPerson (the guarantor).
Encounter.status per event after the IG's table-hl70003 map: A01 in-progress,
A04 planned, A03 finished (PV1-45, else EVN-6, else MSH-7 as period.end), A11
cancelled; A08 keeps the stored status. A03 and A11 need the visit to exist here.
"""

from __future__ import annotations

from typing import Any

from fhir_server.adapters.hl7v2 import segments
from fhir_server.adapters.hl7v2.message import (
    V2_TABLE,
    Segment,
    V2Error,
    V2Message,
    address,
    authority_system,
    codeable,
    contact_point,
    date_of,
    dtm,
    human_name,
    identifier,
)
from fhir_server.adapters.upsert import Wanted
from fhir_server.terminology.systems import COVERAGE_CLASS

EVENT_STATUS = {"A01": "in-progress", "A04": "planned", "A03": "finished", "A11": "cancelled",
                "A08": None}
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
# HL7 table 0063 (relationship) -> R4 subscriber-relationship.
SUBSCRIBER = {"SEL": "self", "SPO": "spouse", "CHD": "child", "PAR": "parent", "DOM": "common",
              "EME": "other"}
GUARANTOR_ROLE = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                  "code": "GUAR", "display": "guarantor"}


def map_adt(msg: V2Message, trigger: str) -> segments.Mapped:
    if trigger == "A40":
        raise V2Error("ADT^A40 (merge patient) is recorded but not applied here: merge the "
                      "patients through the FHIR API", where="MSH-9", code="201")
    mapped = segments.Mapped()
    patient = segments.patient(msg, mapped)
    if msg.one("PV1", required=trigger in ("A01", "A03", "A04", "A11")) is not None:
        ref = segments.encounter(msg, mapped, patient, status=EVENT_STATUS[trigger])
        visit = mapped.wanted[-1] if ref.endswith(":encounter") else None
        if visit is not None and trigger in ("A03", "A11"):
            visit.create = False  # a discharge or a cancel of a visit unknown here is an error
        if visit is not None and trigger == "A03" and "end" not in visit.content.get(
                "period", {}):
            evn = msg.one("EVN", required=False)
            ended = (dtm(evn.at(6), "EVN-6") if evn else None) or dtm(msg.msh.at(7), "MSH-7")
            if ended:
                visit.content["period"] = {**visit.content.get("period", {}), "end": ended}
    for n, in1 in enumerate(msg.all("IN1"), 1):
        coverage(msg, in1, n, mapped, patient)
    for n, gt1 in enumerate(msg.all("GT1"), 1):
        guarantor(msg, gt1, n, mapped, patient)
    return mapped


def coverage(msg: V2Message, in1: Segment, n: int, mapped: segments.Mapped,
             patient_ref: str) -> None:
    """IN1 -> Coverage: IN1-3 payor identifier and IN1-4 name -> payor Organization;
    IN1-49 insured's id (else IN1-36 policy number) -> identifier (type MB, matched) and
    subscriberId; IN1-2 plan -> class plan; IN1-8/9 group -> class group; IN1-12/13
    period; IN1-15 type; IN1-17 relationship (subscriber = the patient when self);
    IN1-22 (else IN1-1) order."""
    where = f"IN1[{n}]"
    payer_id = identifier(in1, 3, default_authority=segments.local_authority(msg))
    if payer_id is None:
        raise V2Error("IN1-3 (insurance company id) is required", where="IN1-3", code="101")
    payer_id.pop("type", None)
    org_content: dict[str, Any] = {"identifier": [payer_id], "active": True,
                                   "type": [{"coding": [{"system": ORG_TYPE, "code": "pay"}]}]}
    if in1.at(4):
        org_content["name"] = in1.at(4)
    payor = mapped.add(Wanted(key=f"payor-{n}", type_="Organization",
                              match=[(payer_id.get("system", ""), payer_id["value"])],
                              content=org_content, source=f"{where}-3", shared=True))
    member = in1.at(49) or in1.at(36)
    if not member:
        raise V2Error("IN1-49 (insured's id) or IN1-36 (policy number) is required",
                      where="IN1-49", code="101")
    system = (authority_system(in1.at(49, 4, 1, 1), in1.at(49, 4, 1, 2), in1.at(49, 4, 1, 3))
              if in1.at(49) else None) or f"urn:hl7v2:member:{payer_id['value']}"
    content: dict[str, Any] = {
        "identifier": [{"type": {"coding": [{"system": V2_TABLE.format(203), "code": "MB"}]},
                        "system": system, "value": member}],
        "status": "active", "subscriberId": member,
        "beneficiary": {"reference": patient_ref}, "payor": [{"reference": payor}]}
    classes = []
    if in1.at(2):
        classes.append({"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]},
                        "value": in1.at(2), **({"name": in1.at(2, 2)} if in1.at(2, 2) else {})})
    if in1.at(8):
        classes.append({"type": {"coding": [{"system": COVERAGE_CLASS, "code": "group"}]},
                        "value": in1.at(8), **({"name": in1.at(9)} if in1.at(9) else {})})
    if classes:
        content["class"] = classes
    period = {k: v for k, v in (("start", date_of(in1.at(12), "IN1-12")),
                                ("end", date_of(in1.at(13), "IN1-13"))) if v}
    if period:
        content["period"] = period
    kind = codeable(in1, 15, table=86)
    if kind:
        content["type"] = kind
    relation = in1.at(17)
    if relation:
        content["relationship"] = {"coding": [
            {"system": RELATIONSHIP, "code": SUBSCRIBER.get(relation, "other")},
            {"system": V2_TABLE.format(63), "code": relation}]}
        if relation == "SEL":
            content["subscriber"] = {"reference": patient_ref}
    order = in1.at(22) or in1.at(1)
    if order.isdigit() and int(order) > 0:
        content["order"] = int(order)
    mapped.add(Wanted(key=f"coverage-{n}", type_="Coverage", match=[(system, member)],
                      content=content, source=where))


def guarantor(msg: V2Message, gt1: Segment, n: int, mapped: segments.Mapped,
              patient_ref: str) -> None:
    """GT1 -> RelatedPerson (not when GT1-11 says the patient is their own guarantor):
    GT1-2 guarantor number (else the patient's first identifier and GT1-1) -> identifier,
    GT1-3 name, GT1-5 address, GT1-6/7 home and work phone, GT1-8 birthDate, GT1-9
    gender, GT1-11 relationship (with v3 RoleClass GUAR)."""
    relation = gt1.at(11)
    if relation == "SEL":
        return
    number = identifier(gt1, 2, default_authority=segments.local_authority(msg))
    if number is None:
        pid = msg.one("PID")
        assert pid is not None
        number = {"system": "urn:hl7v2:guarantor",
                  "value": f"{pid.at(3, 4)}|{pid.at(3)}|{gt1.at(1) or n}"}
    content: dict[str, Any] = {"identifier": [number], "active": True,
                               "patient": {"reference": patient_ref},
                               "relationship": [{"coding": [
                                   GUARANTOR_ROLE,
                                   *([{"system": V2_TABLE.format(63), "code": relation}]
                                     if relation else [])]}]}
    name = human_name(gt1, 3)
    if name:
        content["name"] = [name]
    where = address(gt1, 5)
    if where:
        content["address"] = [where]
    telecom = [t for f, use in ((6, "home"), (7, "work"))
               if (t := contact_point(gt1, f, default_use=use))]
    if telecom:
        content["telecom"] = telecom
    born = date_of(gt1.at(8), "GT1-8")
    if born:
        content["birthDate"] = born
    if gt1.at(9) in segments.GENDER:
        content["gender"] = segments.GENDER[gt1.at(9)]
    mapped.add(Wanted(key=f"guarantor-{n}", type_="RelatedPerson",
                      match=[(number.get("system", ""), number["value"])],
                      content=content, source=f"GT1[{n}]"))
