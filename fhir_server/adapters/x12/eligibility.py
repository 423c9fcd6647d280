"""Eligibility over X12: the 270 inquiry (005010X279A1) and the 271 answer, as FHIR.

270, from the packed CoverageEligibilityRequest: 2100A payer ``NM1*PR`` (name, payer id of
type NIIP), 2100B information receiver ``NM1*1P`` (``provider``: name and NPI), 2000C/2100C
subscriber ``TRN*1`` (trace), ``NM1*IL`` (name, member id = ``subscriberId``), ``DMG``,
``DTP*291`` (the service date), ``EQ`` (service types: the items' categories coded in
X12 service type codes, else 30); a patient who is not the subscriber is asked as the
dependent (2000D/2100D ``NM1*03``, ``DMG``, ``DTP``, ``EQ``).

271, into the CoverageEligibilityResponse: ``AAA`` rejections (e.g. 75 subscriber not
found) as ``error`` (``member-not-found`` for the not-found family) with ``inforce`` false;
``EB`` segments as ``insurance.item``: EB01 1-5 active (``inforce`` true), 6-8 inactive,
B copay (EB07), A coinsurance (EB08), C deductible (EB07), G out of pocket (EB07),
I not covered (``excluded``); EB03 service types as ``category``, EB05 plan description
as ``name``, EB12 as ``network`` (Y in, N out), EB06 23 as ``term`` annual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_server.adapters.payer import Partner
from fhir_server.adapters.x12.fhir_read import (
    GENDER,
    Missing,
    Packed,
    Resource,
    coding,
    npi,
    organization_name,
    payer_id,
    person_name,
    x12_date,
)
from fhir_server.adapters.x12.remittance import number
from fhir_server.adapters.x12.segments import Envelope, Interchange, X12Error, interchange, segment
from fhir_server.revenue.coverage import focal_coverage_ref

VERSION = "005010X279A1"
SERVICE_TYPE = "https://x12.org/codes/service-type-codes"
AAA_REASON = "https://x12.org/codes/reject-reason-codes"
NOT_FOUND = {"67", "72", "73", "75", "58", "76"}  # patient or subscriber not found / not matched
ACTIVE = {"1", "2", "3", "4", "5"}
INACTIVE = {"6", "7", "8"}
BENEFIT_OF_EB = {"B": "copay", "A": "copay-percent", "C": "deductible", "G": "copay-maximum"}


def _name(code: str, resource: Resource, where: str, qualifier: str, id_: str) -> str:
    if resource.get("resourceType") == "Organization":
        return segment("NM1", code, "2", organization_name(resource, where), None, None, None,
                       None, qualifier, id_)
    family, given = person_name(resource, where)
    return segment("NM1", code, "1", family, given, None, None, None, qualifier, id_)


def write_270(request: Resource, *, partner: Partner, control: int, at: datetime) -> str:
    packed = Packed(request)
    coverage = packed.need(focal_coverage_ref(request), "Coverage",
                           "CoverageEligibilityRequest.insurance.coverage")
    payer = packed.need(request.get("insurer"), "Organization",
                        "CoverageEligibilityRequest.insurer")
    provider = packed.need(request.get("provider"), ("Organization", "Practitioner"),
                           "CoverageEligibilityRequest.provider")
    patient = packed.need(request.get("patient"), "Patient", "CoverageEligibilityRequest.patient")
    member = coverage.get("subscriberId")
    if not member:
        raise Missing("the Coverage needs a subscriberId (the member id)",
                      "Coverage.subscriberId")
    relationship = next((c.get("code") for c in (coverage.get("relationship") or {})
                         .get("coding") or []), "self")
    on = x12_date(request.get("servicedDate")) or at.strftime("%Y%m%d")
    types = [c["code"] for i in request.get("item") or []
             if (c := coding(i.get("category"), (SERVICE_TYPE,)))] or ["30"]
    inquiry = [segment("DTP", "291", "D8", on), *(segment("EQ", t) for t in types)]
    body = [segment("BHT", "0022", "13", str(control), at.strftime("%Y%m%d"), at.strftime("%H%M")),
            segment("HL", "1", None, "20", "1"),
            _name("PR", payer, "CoverageEligibilityRequest.insurer", "PI",
                  payer_id(payer, "CoverageEligibilityRequest.insurer")),
            segment("HL", "2", "1", "21", "1"),
            _name("1P", provider, "CoverageEligibilityRequest.provider", "XX",
                  npi(provider, "CoverageEligibilityRequest.provider")),
            segment("HL", "3", "2", "22", "0" if relationship == "self" else "1"),
            segment("TRN", "1", str(control), "9" + "".join(
                ch for ch in partner.sender if ch.isalnum())[:9].ljust(9, "0"))]
    if relationship == "self":
        body += [_name("IL", patient, "CoverageEligibilityRequest.patient", "MI", str(member)),
                 *_demographics(patient, "CoverageEligibilityRequest.patient"), *inquiry]
    else:
        subscriber = packed.need(coverage.get("subscriber"), ("Patient", "RelatedPerson"),
                                 "Coverage.subscriber")
        body += [_name("IL", subscriber, "Coverage.subscriber", "MI", str(member)),
                 segment("HL", "4", "3", "23", "0"),
                 _name("03", patient, "CoverageEligibilityRequest.patient", "", ""),
                 *_demographics(patient, "CoverageEligibilityRequest.patient"), *inquiry]
    return interchange(Envelope(sender=partner.sender, receiver=partner.receiver,
                                usage=partner.usage, control=control, functional_id="HS",
                                version=VERSION, at=at), "270", body)


def _demographics(person: Resource, where: str) -> list[str]:
    born = x12_date(person.get("birthDate"))
    if born is None:
        raise Missing(f"{where} needs a birth date", f"{where}.birthDate")
    return [segment("DMG", "D8", born, GENDER.get(str(person.get("gender")), "U"))]


@dataclass
class Benefit:
    info: str  # EB01
    level: str  # EB02: IND, FAM, ...
    service_types: list[str]
    plan: str
    period: str  # EB06
    amount: Decimal | None
    percent: Decimal | None
    network: str  # EB12


@dataclass
class Eligibility:
    rejections: list[str] = field(default_factory=list)  # AAA03 reasons
    benefits: list[Benefit] = field(default_factory=list)

    @property
    def not_found(self) -> bool:
        return any(r in NOT_FOUND for r in self.rejections)

    @property
    def inforce(self) -> bool:
        infos = {b.info for b in self.benefits}
        return not self.rejections and bool(infos & ACTIVE) and not infos & INACTIVE


def read_271(document: Interchange) -> Eligibility:
    out = Eligibility()
    sets = document.transactions()
    if not sets or any(t.set_id != "271" for t in sets):
        raise X12Error("Expected a 271 answer", segment="ST")
    for transaction in sets:
        for seg in transaction.segments:
            if seg.id == "AAA" and seg.get(1) == "N":
                out.rejections.append(seg.get(3))
            elif seg.id == "EB":
                out.benefits.append(Benefit(
                    info=seg.get(1), level=seg.get(2),
                    service_types=seg.get(3).split(seg.repetition) if seg.get(3) else [],
                    plan=seg.get(5), period=seg.get(6), amount=number(seg, 7, required=False),
                    percent=number(seg, 8, required=False), network=seg.get(12)))
    return out


def response_of(found: Eligibility, request: Resource, *, currency: str,
                created: str) -> Resource:
    """The CoverageEligibilityResponse the 271 says (references are set by the caller)."""
    insurance: dict[str, Any] = {"coverage": (request.get("insurance") or [{}])[0].get(
        "coverage", {}), "inforce": found.inforce}
    response: Resource = {
        "resourceType": "CoverageEligibilityResponse", "status": "active",
        "purpose": request.get("purpose") or ["validation", "benefits"],
        "patient": request.get("patient"), "created": created, "outcome": "complete",
        "insurer": request.get("insurer"), "request": {"display": "270"},
        "disposition": ("Subscriber not found" if found.not_found else
                        "Policy is in force" if found.inforce else "Policy is not in force"),
    }
    if request.get("servicedDate"):
        response["servicedDate"] = request["servicedDate"]
    items = [_item(b, currency) for b in found.benefits if b.info not in ACTIVE | INACTIVE
             or b.plan]
    if items and found.inforce:
        insurance["item"] = items
    response["insurance"] = [insurance]
    if found.rejections:
        response["error"] = [{"code": {"coding": [
            *([{"system": "https://fhir-rcm-server.org/CodeSystem/adjudication-error",
                "code": "member-not-found", "display": "Member not found"}]
              if reason in NOT_FOUND else []),
            {"system": AAA_REASON, "code": reason or "unknown"}]}} for reason in found.rejections]
    return response


def _item(benefit: Benefit, currency: str) -> dict[str, Any]:
    item: dict[str, Any] = {"category": {"coding": [
        {"system": SERVICE_TYPE, "code": t} for t in benefit.service_types or ["30"]]}}
    if benefit.plan:
        item["name"] = benefit.plan
    if benefit.network in ("Y", "N"):
        item["network"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/benefit-network",
            "code": "in" if benefit.network == "Y" else "out"}]}
    if benefit.level in ("IND", "FAM"):
        item["unit"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/benefit-unit",
                                    "code": "individual" if benefit.level == "IND"
                                    else "family"}]}
    if benefit.period == "23":
        item["term"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/benefit-term",
                                    "code": "annual"}]}
    elif benefit.period == "29":
        item["description"] = "Remaining"
    if benefit.info == "I":
        item["excluded"] = True
    kind = BENEFIT_OF_EB.get(benefit.info)
    if kind is not None:
        entry: dict[str, Any] = {"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/benefit-type", "code": kind}]}}
        if kind == "copay-percent" and benefit.percent is not None:
            percent = benefit.percent * 100
            entry["allowedUnsignedInt" if percent == percent.to_integral_value()
                  else "allowedString"] = (int(percent) if percent == percent.to_integral_value()
                                           else f"{percent}%")
        elif benefit.amount is not None:
            entry["allowedMoney"] = {"value": benefit.amount, "currency": currency}
        item["benefit"] = [entry]
    return item
