"""An 837P (005010X222A1) professional claim, written from a packed FHIR Claim.

Segment by segment (docs/x12.md has the whole table):

* 1000A submitter: ``NM1*41`` the billing provider's name with the trading partner's
  sender id, ``PER*IC`` its phone or email; 1000B receiver: ``NM1*40`` the receiver id.
* 2000A/2010AA billing provider (``Claim.provider``): ``NM1*85`` name and NPI, ``N3``/``N4``
  address, ``REF*EI`` tax id.
* 2000B/2010BA subscriber (``Claim.insurance`` focal Coverage): ``SBR`` (order -> P/S/T,
  relationship 18 when the patient is the subscriber, group number, claim filing
  indicator), ``NM1*IL`` name and member id (``subscriberId``), ``N3``/``N4``, ``DMG``;
  2010BB payer (``Claim.insurer``): ``NM1*PR`` name and payer id (identifier of type NIIP).
* 2000C/2010CA patient, when the patient is not the subscriber: ``PAT``, ``NM1*QC``, ``DMG``.
* 2300 claim: ``CLM`` (CLM01 = the Claim's id, total, place of service from the item's
  location or its Encounter's Location type or class, CLM05-3 the claim frequency: 1, or 7
  or 8 for a correction), ``REF*G1`` the prior authorization number (the focal insurance's
  first ``preAuthRef``), ``REF*F8`` the payer's number for the claim a correction
  corrects, ``HI`` ICD-10-CM diagnoses.
* 2310B rendering provider: ``NM1*82`` of the first Practitioner in ``careTeam`` with an NPI.
* 2400 lines: ``LX``, ``SV1`` (CPT/HCPCS code and modifiers, the item's amount as
  ``revenue/amounts.py`` computes it (net, else unit x quantity x factor), units, diagnosis
  pointers), ``DTP*472`` service date, ``REF*6R`` the item's sequence (echoed in 835s).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_server.adapters.payer import Partner
from fhir_server.adapters.x12.claim837_cob import (
    ORDER,
    RELATIONSHIP,
    OtherPayer,
    claim_loops,
    line_loops,
    other_payers,
    policy,
)
from fhir_server.adapters.x12.fhir_read import (
    CPT,
    GENDER,
    HCPCS,
    ICD10CM,
    NPI,
    POS,
    TAX_ID,
    Missing,
    Packed,
    Resource,
    address,
    amount,
    coding,
    npi,
    organization_name,
    payer_id,
    person_name,
    phone_or_email,
    x12_date,
)
from fhir_server.adapters.x12.fhir_read import identifier as identifier_of
from fhir_server.adapters.x12.segments import Envelope, interchange, segment
from fhir_server.revenue.amounts import item_amount
from fhir_server.revenue.corrections import frequency_of
from fhir_server.revenue.coverage import focal_coverage_ref, focal_insurance

VERSION = "005010X222A1"
# Encounter.class (v3 ActCode) -> place of service, when no Location says it.
POS_OF_CLASS = {"AMB": "11", "VR": "02", "HH": "12", "EMER": "23", "IMP": "21", "ACUTE": "21",
                "SS": "22", "OBSENC": "22"}
MAX_DIAGNOSES = 12


def claim_control(claim: Resource, system: str) -> str:
    """CLM01: the identifier this server gave the Claim (the 835's CLP01 echoes it)."""
    value = identifier_of(claim, system)
    if not value or len(value) > 38:
        raise Missing("the Claim has no identifier of at most 38 characters for CLM01",
                      "Claim.identifier")
    return value


def write_837p(claim: Resource, *, control_system: str, partner: Partner, control: int,
               at: datetime) -> str:
    packed = Packed(claim)
    body = [segment("BHT", "0019", "00", str(control), at.strftime("%Y%m%d"),
                    at.strftime("%H%M"), "CH")]
    provider = packed.need(claim.get("provider"), ("Organization", "Practitioner"),
                           "Claim.provider")
    body += _submitter(provider, partner)
    body += _billing_provider(provider)
    coverage = packed.need(focal_coverage_ref(claim), "Coverage", "Claim.insurance.coverage")
    patient = packed.need(claim.get("patient"), "Patient", "Claim.patient")
    insurer = packed.need(claim.get("insurer") or (coverage.get("payor") or [None])[0],
                          "Organization", "Claim.insurer")
    others = other_payers(packed, claim)  # the payers that answered before this one
    body += _subscriber(packed, coverage, patient, insurer, place=len(others) + 1)
    body += _claim(packed, claim, control_system, patient, others)
    return interchange(Envelope(sender=partner.sender, receiver=partner.receiver,
                                usage=partner.usage, control=control, functional_id="HC",
                                version=VERSION, at=at), "837", body)


def name_segment(code: str, resource: Resource, where: str, qualifier: str,
                  id_: str) -> str:
    if resource.get("resourceType") == "Organization":
        return segment("NM1", code, "2", organization_name(resource, where), None, None, None,
                       None, qualifier, id_)
    family, given = person_name(resource, where)
    return segment("NM1", code, "1", family, given, None, None, None, qualifier, id_)


def _address_segments(resource: Resource, where: str, *, required: bool) -> list[str]:
    found = address(resource, where, required=required)
    if found is None:
        return []
    lines, (city, state, zip_) = found
    return [segment("N3", *lines), segment("N4", city, state, zip_)]


def _submitter(provider: Resource, partner: Partner) -> list[str]:
    contact = phone_or_email(provider)
    if contact is None:
        raise Missing("Claim.provider needs a phone or email (1000A PER)", "Claim.provider.telecom")
    name = (organization_name(provider, "Claim.provider")
            if provider.get("resourceType") == "Organization"
            else " ".join(reversed(person_name(provider, "Claim.provider"))))
    return [segment("NM1", "41", "2", name, None, None, None, None, "46", partner.sender),
            segment("PER", "IC", "BILLING", contact[0], contact[1]),
            segment("NM1", "40", "2", partner.receiver, None, None, None, None, "46",
                    partner.receiver)]


def _billing_provider(provider: Resource) -> list[str]:
    where = "Claim.provider"
    tax_id = identifier_of(provider, TAX_ID)
    if not tax_id:
        raise Missing(f"{where} needs a tax id (identifier system {TAX_ID})",
                      f"{where}.identifier")
    return [segment("HL", "1", None, "20", "1"),
            name_segment("85", provider, where, "XX", npi(provider, where)),
            *_address_segments(provider, where, required=True),
            segment("REF", "EI", "".join(ch for ch in tax_id if ch.isdigit()))]


def demographics(person: Resource, where: str) -> list[str]:
    born = x12_date(person.get("birthDate"))
    if born is None:
        raise Missing(f"{where} needs a birth date", f"{where}.birthDate")
    return [segment("DMG", "D8", born, GENDER.get(str(person.get("gender")), "U"))]


def _subscriber(packed: Packed, coverage: Resource, patient: Resource,
                insurer: Resource, *, place: int) -> list[str]:
    """2000B/2010BA/2010BB (and 2000C when the patient is not the subscriber); ``place``:
    this payer's responsibility for the claim (1 primary, 2 secondary, 3 tertiary)."""
    held = policy(coverage, "Claim.insurance.coverage")
    relationship, is_self = held.relationship, held.relationship == "self"
    subscriber = patient if is_self else packed.need(
        coverage.get("subscriber"), ("Patient", "RelatedPerson"), "Coverage.subscriber")
    out = [segment("HL", "2", "1", "22", "0" if is_self else "1"),
           segment("SBR", ORDER.get(place, "T"), "18" if is_self else None, held.group,
                   None, None, None, None, None, held.filing),
           name_segment("IL", subscriber, "Coverage.subscriber", "MI", held.member),
           *_address_segments(subscriber, "Claim.patient", required=is_self),
           *demographics(subscriber, "Claim.patient" if is_self else "Coverage.subscriber"),
           name_segment("PR", insurer, "Claim.insurer", "PI", payer_id(insurer,
                                                                          "Claim.insurer"))]
    if not is_self:
        out += [segment("HL", "3", "2", "23", "0"),
                segment("PAT", RELATIONSHIP.get(str(relationship), "G8")),
                name_segment("QC", patient, "Claim.patient", "", ""),
                *_address_segments(patient, "Claim.patient", required=True),
                *demographics(patient, "Claim.patient")]
    return out


def _diagnoses(packed: Packed, claim: Resource) -> tuple[list[str], dict[int, int]]:
    """ICD-10-CM codes in sequence order, and each diagnosis sequence's pointer (1-based)."""
    codes, pointers = [], {}
    entries = sorted((d for d in claim.get("diagnosis") or [] if isinstance(d, dict)),
                     key=lambda d: int(d.get("sequence", 0)))
    for n, entry in enumerate(entries):
        where = f"Claim.diagnosis[{n}]"
        concept = entry.get("diagnosisCodeableConcept")
        if concept is None:
            condition = packed.need(entry.get("diagnosisReference"), "Condition",
                                    f"{where}.diagnosisReference")
            concept = condition.get("code")
        found = coding(concept, (ICD10CM,))
        if found is None:
            raise Missing(f"{where} has no ICD-10-CM code ({ICD10CM})", where)
        code = str(found["code"]).replace(".", "").upper()
        if code not in codes:
            codes.append(code)
        pointers[int(entry.get("sequence", n + 1))] = codes.index(code) + 1
    if not codes:
        raise Missing("an 837P needs at least one ICD-10-CM diagnosis", "Claim.diagnosis")
    if len(codes) > MAX_DIAGNOSES:
        raise Missing(f"an 837P carries at most {MAX_DIAGNOSES} diagnoses", "Claim.diagnosis")
    return codes, pointers


def place_of_service(packed: Packed, claim: Resource) -> str:
    for item in claim.get("item") or []:
        found = coding(item.get("locationCodeableConcept"), (POS,))
        if found:
            return str(found["code"])
        for reference in item.get("encounter") or []:
            encounter = packed.get(reference, "Encounter")
            if encounter is None:
                continue
            for place in encounter.get("location") or []:
                location = packed.get((place or {}).get("location"), "Location")
                for type_ in (location or {}).get("type") or []:
                    found = coding(type_, (POS,))
                    if found:
                        return str(found["code"])
            kind = (encounter.get("class") or {}).get("code")
            if kind in POS_OF_CLASS:
                return POS_OF_CLASS[kind]
    return "11"


def _claim(packed: Packed, claim: Resource, control_system: str, patient: Resource,
           others: list[OtherPayer]) -> list[str]:
    codes, pointers = _diagnoses(packed, claim)
    items = sorted((i for i in claim.get("item") or [] if isinstance(i, dict)),
                   key=lambda i: int(i.get("sequence", 0)))
    if not items:
        raise Missing("the Claim has no items", "Claim.item")
    lines: list[str] = []
    total = Decimal(0)
    for n, item in enumerate(items):
        charge, line = _line(packed, claim, item, n, pointers)
        total += charge
        lines += line
        if others:  # what the payers before this one did with the line (2430)
            lines += line_loops(others, item, f"Claim.item[{n}]")
    if (claim.get("total") or {}).get("value") is not None:
        total = Decimal(str(claim["total"]["value"]))
    frequency = frequency_of(claim)
    out = [segment("CLM", claim_control(claim, control_system), amount(total), None, None,
                   (place_of_service(packed, claim), "B", frequency), "Y", "A", "Y", "Y")]
    authorization = next(iter((focal_insurance(claim) or {}).get("preAuthRef") or []), None)
    if authorization:  # the payer's prior authorization number for these services
        out.append(segment("REF", "G1", str(authorization)))
    if frequency != "1":  # a correction: the payer's number for the claim it corrects
        number = next((str(r["reference"]["value"]) for r in claim.get("related") or []
                       if (r.get("reference") or {}).get("value")), None)
        if number is None:
            raise Missing("a corrected claim needs the payer's claim number (REF*F8)",
                          "Claim.related.reference")
        out.append(segment("REF", "F8", number))
    out.append(segment("HI", *[("ABK" if i == 0 else "ABF", c) for i, c in enumerate(codes)]))
    for member in claim.get("careTeam") or []:
        practitioner = packed.get((member or {}).get("provider"), "Practitioner")
        rendering = identifier_of(practitioner, NPI) if practitioner else None
        if practitioner is not None and rendering:
            out.append(name_segment("82", practitioner, "Claim.careTeam.provider", "XX",
                                     rendering))
            break
    return out + claim_loops(packed, others, patient) + lines


def _line(packed: Packed, claim: Resource, item: dict[str, Any], n: int,
          pointers: dict[int, int]) -> tuple[Decimal, list[str]]:
    where = f"Claim.item[{n}]"
    code = coding(item.get("productOrService"), (CPT, *HCPCS))
    if code is None:
        raise Missing(f"{where} has no CPT or HCPCS code", f"{where}.productOrService")
    modifiers = [str(m["code"]) for c in item.get("modifier") or []
                 if (m := coding(c, (CPT, *HCPCS)))][:4]
    charge = item_amount(item, where)  # the amount FHIR bills too (revenue/amounts.py)
    quantity = Decimal(str((item.get("quantity") or {}).get("value", 1)))
    used = [pointers[s] for s in item.get("diagnosisSequence") or [] if s in pointers][:4]
    served = (x12_date(item.get("servicedDate"))
              or x12_date((item.get("servicedPeriod") or {}).get("start"))
              or x12_date((claim.get("billablePeriod") or {}).get("start")))
    if served is None:
        raise Missing(f"{where} needs a service date", f"{where}.servicedDate")
    return charge, [
        segment("LX", str(n + 1)),
        segment("SV1", ("HC", str(code["code"]), *modifiers), amount(charge), "UN",
                amount(quantity), None, None, tuple(str(p) for p in (used or [1]))),
        segment("DTP", "472", "D8", served),
        segment("REF", "6R", str(item.get("sequence", n + 1)))]
