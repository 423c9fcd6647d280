"""Claim status inquiry and response: the 276 this server writes and the 277 it reads
(005010X212).

The 276 asks a payer, through its clearinghouse, about one claim: 2100A the payer
(``NM1*PR``, its payer id), 2100B the information receiver (``NM1*41``, the clinic with
the trading partner's sender id), 2100C the billing provider (``NM1*1P``, its NPI), 2000D
the subscriber (``DMG``, ``NM1*IL`` the member id) and, when the patient is not the
subscriber, 2000E the patient (``DMG``, ``NM1*QC``); then 2200D/E the claim: ``TRN*1`` the
claim's id as the trace (the 277 echoes it in ``TRN*2``), ``REF*1K`` the payer's claim
number when an earlier 277CA or 835 gave it, ``REF*EJ`` the patient control number (the
837P's CLM01, the claim's id), ``AMT*T3`` the total charge, ``DTP*472`` the service dates.

The 277 is read by ``acks.read_277`` (the same STC structure as a 277CA's, at the
subscriber or patient level).
"""

from __future__ import annotations

from datetime import datetime

from fhir_server.adapters.payer import Partner
from fhir_server.adapters.x12.claim837 import demographics, name_segment
from fhir_server.adapters.x12.claim837_cob import policy
from fhir_server.adapters.x12.fhir_read import Missing, Packed, Resource, amount, npi, payer_id, x12_date
from fhir_server.adapters.x12.segments import Envelope, interchange, segment
from fhir_server.revenue.cob import claim_total
from fhir_server.revenue.coverage import focal_coverage_ref

VERSION = "005010X212"


def write_276(claim: Resource, *, payer_claim: str | None, partner: Partner, control: int,
              at: datetime) -> str:
    """The 276 asking about ``claim`` (packed: its payer, provider, Coverage and patient
    contained)."""
    packed = Packed(claim)
    coverage = packed.need(focal_coverage_ref(claim), "Coverage", "Claim.insurance.coverage")
    payer = packed.need(claim.get("insurer") or (coverage.get("payor") or [None])[0],
                        "Organization", "Claim.insurer")
    provider = packed.need(claim.get("provider"), ("Organization", "Practitioner"),
                           "Claim.provider")
    patient = packed.need(claim.get("patient"), "Patient", "Claim.patient")
    held = policy(coverage, "Claim.insurance.coverage")
    is_self = held.relationship == "self"
    period = claim.get("billablePeriod") or {}
    start = x12_date(period.get("start")) or x12_date(next(
        (i.get("servicedDate") for i in claim.get("item") or [] if i.get("servicedDate")), None))
    if start is None:
        raise Missing("the Claim needs its service dates (billablePeriod)", "Claim.billablePeriod")
    end = x12_date(period.get("end")) or start
    about_claim = [segment("TRN", "1", str(claim["id"])),
                   *([segment("REF", "1K", payer_claim)] if payer_claim else []),
                   segment("REF", "EJ", str(claim["id"])),
                   segment("AMT", "T3", amount(claim_total(claim))),
                   segment("DTP", "472", "RD8", f"{start}-{end}")]
    subscriber = patient if is_self else packed.need(
        coverage.get("subscriber"), ("Patient", "RelatedPerson"), "Coverage.subscriber")
    body = [segment("BHT", "0010", "13", str(control), at.strftime("%Y%m%d"), at.strftime("%H%M")),
            segment("HL", "1", None, "20", "1"),
            name_segment("PR", payer, "Claim.insurer", "PI", payer_id(payer, "Claim.insurer")),
            segment("HL", "2", "1", "21", "1"),
            name_segment("41", provider, "Claim.provider", "46", partner.sender),
            segment("HL", "3", "2", "19", "1"),
            name_segment("1P", provider, "Claim.provider", "XX", npi(provider, "Claim.provider")),
            segment("HL", "4", "3", "22", "0" if is_self else "1"),
            *demographics(subscriber, "Claim.patient" if is_self else "Coverage.subscriber"),
            name_segment("IL", subscriber, "Coverage.subscriber", "MI", held.member)]
    if is_self:
        body += about_claim
    else:
        body += [segment("HL", "5", "4", "23"), *demographics(patient, "Claim.patient"),
                 name_segment("QC", patient, "Claim.patient", "", ""), *about_claim]
    return interchange(Envelope(sender=partner.sender, receiver=partner.receiver,
                                usage=partner.usage, control=control, functional_id="HR",
                                version=VERSION, at=at), "276", body)
