"""The segments every message family shares, mapped after the HL7 v2-to-FHIR IG:
PID -> Patient, PV1 -> Encounter (with its Practitioners and Location), XCN ->
Practitioner, PL -> Location. Each returns ``Wanted`` resources (``fhir_server/adapters/upsert.py``)
matched here by their identifiers; references between them are ``urn:wanted:KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
from fhir_server.adapters.upsert import WANTED, Wanted

GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown",
          "N": "unknown"}
# HL7 table 0004 (patient class) -> v3 ActCode, per the IG's table-hl70004 map.
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ENCOUNTER_CLASS = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC", "R": "AMB", "B": "IMP"}
UNKNOWN_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                 "code": "UNK"}
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# PV1 fields naming practitioners, and their participant type.
PV1_PEOPLE = ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM"))


@dataclass
class Mapped:
    """What a message maps to: the resources, and the lease names that serialise messages
    about the same things (their identifiers)."""

    wanted: list[Wanted] = field(default_factory=list)

    def add(self, w: Wanted) -> str:
        for existing in self.wanted:
            if existing.type_ == w.type_ and set(existing.match) & set(w.match):
                return f"{WANTED}{existing.key}"  # the same practitioner named twice
        self.wanted.append(w)
        return f"{WANTED}{w.key}"

    def leases(self, keys: set[str]) -> list[str]:
        """Leases on the identifiers of the resources ``keys`` (those about to be created:
        changes to stored ones are guarded by their version instead)."""
        return sorted({f"hl7:{w.type_}|{s}|{v}" for w in self.wanted if w.key in keys
                       for s, v in w.match})


def local_authority(msg: V2Message) -> str:
    """Identifiers without an assigning authority are the sending facility's (MSH-4)."""
    return msg.sender[1] or msg.sender[0] or "unknown"


def patient(msg: V2Message, mapped: Mapped) -> str:
    """PID -> Patient: PID-3 identifiers (any of them finds the patient), PID-5 names,
    PID-7 birthDate, PID-8 gender, PID-11 addresses, PID-13 home and PID-14 work
    telecom, PID-29/30 deceased."""
    pid = msg.one("PID")
    assert pid is not None
    default = local_authority(msg)
    ids = [i for r in range(1, pid.repetitions(3) + 1)
           if (i := identifier(pid, 3, r, default_authority=default))]
    if not ids:
        raise V2Error("PID-3 (patient identifier list) is required", where="PID-3", code="101")
    content: dict[str, Any] = {"identifier": ids}
    names = [n for r in range(1, pid.repetitions(5) + 1) if (n := human_name(pid, 5, r))]
    if names:
        content["name"] = names
    born = date_of(pid.at(7), "PID-7")
    if born:
        content["birthDate"] = born
    sex = pid.at(8)
    if sex:
        if sex not in GENDER:
            raise V2Error("PID-8 is not a code of HL7 table 0001", where="PID-8", code="103")
        content["gender"] = GENDER[sex]
    addresses = [a for r in range(1, pid.repetitions(11) + 1) if (a := address(pid, 11, r))]
    if addresses:
        content["address"] = addresses
    telecom = [t for f, use in ((13, "home"), (14, "work"))
               for r in range(1, pid.repetitions(f) + 1)
               if (t := contact_point(pid, f, r, default_use=use))]
    if telecom:
        content["telecom"] = telecom
    died = dtm(pid.at(29), "PID-29")
    if died:
        content["deceasedDateTime"] = died
    elif pid.at(30) in ("Y", "N"):
        content["deceasedBoolean"] = pid.at(30) == "Y"
    return mapped.add(Wanted(key="patient", type_="Patient",
                             match=[(i.get("system", ""), i["value"]) for i in ids],
                             content=content, defaults={"active": True}, source="PID"))


def practitioner(msg: V2Message, seg: Segment, field_: int, rep: int, mapped: Mapped,
                 key: str) -> str | None:
    """XCN -> Practitioner: XCN.1 id (system: XCN.9 assigning authority, else the sending
    facility), XCN.2-6 name."""
    value = seg.at(field_, 1, rep)
    if not value:
        return None
    system = authority_system(seg.at(field_, 9, rep, 1), seg.at(field_, 9, rep, 2),
                              seg.at(field_, 9, rep, 3)) or \
        f"urn:hl7v2:authority:{local_authority(msg)}"
    content: dict[str, Any] = {"identifier": [{"system": system, "value": value}]}
    name = human_name(seg, field_, rep, first=2)
    if name:
        content["name"] = [name]
    return mapped.add(Wanted(key=key, type_="Practitioner", match=[(system, value)],
                             content=content, defaults={"active": True},
                             source=seg.where(field_), shared=True))


def location(msg: V2Message, seg: Segment, field_: int, mapped: Mapped, key: str) -> str | None:
    """PL -> Location: point of care, room and bed (PL.1-3) name it within its facility
    (PL.4, else the sending facility)."""
    parts = [seg.at(field_, c) for c in (1, 2, 3)]
    if not any(parts):
        return None
    facility = seg.at(field_, 4) or local_authority(msg)
    value = "^".join(parts).rstrip("^")
    system = f"urn:hl7v2:location:{facility}"
    content = {"identifier": [{"system": system, "value": value}],
               "name": " ".join(p for p in parts if p), "status": "active", "mode": "instance"}
    return mapped.add(Wanted(key=key, type_="Location", match=[(system, value)],
                             content=content, source=seg.where(field_), shared=True))


def encounter(msg: V2Message, mapped: Mapped, patient_ref: str, *,
              status: str | None) -> str:
    """PV1 -> Encounter: PV1-19 visit number (identifier, type VN; required, it finds the
    visit), PV1-2 class, PV1-3 location, PV1-7/8/9/17 practitioners (ATND, REF, CON, ADM),
    PV1-10 serviceType, PV1-36 discharge disposition, PV1-44/45 period. ``status`` None
    keeps the stored status (a new Encounter gets ``unknown``)."""
    pv1 = msg.one("PV1")
    assert pv1 is not None
    visit = identifier(pv1, 19, default_authority=local_authority(msg))
    if visit is None:
        raise V2Error("PV1-19 (visit number) is required to find the visit", where="PV1-19",
                      code="101")
    visit["type"] = {"coding": [{"system": V2_TABLE.format(203), "code": "VN"}]}
    content: dict[str, Any] = {"identifier": [visit], "subject": {"reference": patient_ref}}
    defaults: dict[str, Any] = {"status": "unknown", "class": UNKNOWN_CLASS}
    if status:
        content["status"] = status
    kind = pv1.at(2)
    if kind:
        content["class"] = ({"system": ACT_CODE, "code": ENCOUNTER_CLASS[kind]}
                            if kind in ENCOUNTER_CLASS else
                            {"system": V2_TABLE.format(4), "code": kind})
    participants = []
    for f, code in PV1_PEOPLE:
        for r in range(1, pv1.repetitions(f) + 1):
            ref = practitioner(msg, pv1, f, r, mapped, key=f"pv1-{f}-{r}")
            if ref:
                participants.append({"type": [{"coding": [{"system": PARTICIPATION,
                                                           "code": code}]}],
                                     "individual": {"reference": ref}})
    if participants:
        content["participant"] = participants
    place = location(msg, pv1, 3, mapped, key="pv1-location")
    if place:
        content["location"] = [{"location": {"reference": place}}]
    service = codeable(pv1, 10, table=69)
    if service:
        content["serviceType"] = service
    disposition = codeable(pv1, 36, table=112)
    if disposition:
        content["hospitalization"] = {"dischargeDisposition": disposition}
    period = {k: v for k, v in (("start", dtm(pv1.at(44), "PV1-44")),
                                ("end", dtm(pv1.at(45), "PV1-45"))) if v}
    if period:
        content["period"] = period
    return mapped.add(Wanted(key="encounter", type_="Encounter",
                             match=[(visit.get("system", ""), visit["value"])],
                             content=content, defaults=defaults, source="PV1"))
