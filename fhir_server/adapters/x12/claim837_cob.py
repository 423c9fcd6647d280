"""The 837P's other-payer loops (005010X222A1 coordination of benefits), for a claim to a
payer after another: one set per payer that answered before it, from the insurance entries
before the focal one that name their payer's ClaimResponse (``revenue/cob.py``; the
Coverage, its payor and the answer travel contained).

* 2320 other subscriber: ``SBR`` (that payer's place: P, S or T; the relationship, group
  number and claim filing indicator of its Coverage), the claim-level ``CAS`` of its
  answer, ``AMT*D`` what it paid, ``OI`` (benefits assigned, release of information).
* 2330A other subscriber name: ``NM1*IL`` with the member id of that Coverage.
* 2330B other payer: ``NM1*PR`` with its payer id; ``DTP*573`` the date it adjudicated,
  when its answer has no lines (else the date is on each line).
* 2430 per line: ``SVD`` (that payer's id, what it paid for the line, the procedure and
  units), ``CAS`` per group (an 835's own adjustments; from a FHIR answer: ``CO*45``
  submitted less eligible, ``PR*3`` copay, ``PR*1`` deductible, ``PR*2`` the rest of the
  member's part), ``DTP*573``. The line's charge is what it paid plus its adjustments.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.adapters.x12.fhir_read import (
    CPT,
    HCPCS,
    Missing,
    Packed,
    Resource,
    amount,
    coding,
    payer_id,
    person_name,
    x12_date,
)
from fhir_server.adapters.x12.segments import segment
from fhir_server.core.money import decimal_of
from fhir_server.revenue.amounts import item_amount
from fhir_server.revenue.cob import earlier_insurance
from fhir_server.terminology.systems import ADJUDICATION, X12_CARC, X12_CAS_GROUP

ORDER = {1: "P", 2: "S", 3: "T"}
ZERO = Decimal(0)
CAS_PER_SEGMENT = 6  # reason/amount/quantity triples one CAS segment carries
# Coverage.relationship -> SBR02 / PAT01 (individual relationship code).
RELATIONSHIP = {"self": "18", "spouse": "01", "child": "19", "common": "53", "parent": "G8",
                "other": "G8", "injured": "G8"}


@dataclass(frozen=True)
class Policy:
    """What a Coverage says for an SBR and its subscriber's NM1*IL."""

    member: str
    relationship: str  # FHIR subscriber-relationship code
    group: str | None
    filing: str  # claim filing indicator


def policy(coverage: Resource, where: str) -> Policy:
    member = coverage.get("subscriberId") or next(
        (str(i["value"]) for i in coverage.get("identifier") or [] if i.get("value")), None)
    if not member:
        raise Missing("the Coverage needs a subscriberId (the member id)", f"{where}.subscriberId")
    relationship = next((c.get("code") for c in (coverage.get("relationship") or {})
                         .get("coding") or []), "self")
    group = next((c.get("value") for c in coverage.get("class") or []
                  if any(t.get("code") == "group" for t in (c.get("type") or {}).get("coding")
                         or [])), None)
    filing = next((c.get("code") for c in (coverage.get("type") or {}).get("coding") or []
                   if str(c.get("system", "")).endswith("claim-filing-indicator-codes")), "CI")
    return Policy(str(member), str(relationship), group, str(filing))


@dataclass(frozen=True)
class OtherPayer:
    place: int  # 1: the primary
    coverage: Resource
    payer: Resource
    answer: Resource

    @property
    def payer_id(self) -> str:
        return payer_id(self.payer, "Claim.insurance.coverage.payor")

    @property
    def adjudicated(self) -> str | None:
        return x12_date((self.answer.get("payment") or {}).get("date")) or x12_date(
            self.answer.get("created"))


def other_payers(packed: Packed, claim: Resource) -> list[OtherPayer]:
    """The payers that answered before the one billed, in their order."""
    out = []
    for place, entry in enumerate(earlier_insurance(claim), 1):
        where = f"Claim.insurance[{place - 1}]"
        coverage = packed.need(entry.get("coverage"), "Coverage", f"{where}.coverage")
        payer = packed.need((coverage.get("payor") or [None])[0], "Organization",
                            f"{where}.coverage.payor")
        answer = packed.need(entry.get("claimResponse"), "ClaimResponse",
                             f"{where}.claimResponse")
        out.append(OtherPayer(place, coverage, payer, answer))
    return out


def _money(value: Any) -> Decimal:
    return decimal_of((value or {}).get("value", 0))


def _x12_adjustments(entries: list[dict[str, Any]]) -> list[tuple[str, str, Decimal]]:
    """(group, reason, amount) of the adjudication entries an 835 gave."""
    out = []
    for entry in entries:
        group = coding(entry.get("category"), (X12_CAS_GROUP,))
        reason = coding(entry.get("reason"), (X12_CARC,))
        if group and reason:
            out.append((str(group["code"]), str(reason["code"]), _money(entry.get("amount"))))
    return out


def _fhir_adjustments(entries: list[dict[str, Any]], charge: Decimal
                      ) -> list[tuple[str, str, Decimal]]:
    """A FHIR answer's line as CAS: what it did not allow, and the member's parts."""
    by: dict[str, Decimal] = {}
    for entry in entries:
        found = coding(entry.get("category"), (ADJUDICATION,))
        if found and "amount" in entry:
            by[str(found["code"])] = _money(entry["amount"])
    eligible = by.get("eligible", charge)
    copay, deductible = by.get("copay", ZERO), by.get("deductible", ZERO)
    rest = eligible - copay - deductible - by.get("benefit", ZERO)
    return [(g, r, a) for g, r, a in (("CO", "45", charge - eligible), ("PR", "3", copay),
                                      ("PR", "1", deductible), ("PR", "2", rest)) if a > 0]


def _cas(adjustments: list[tuple[str, str, Decimal]]) -> list[str]:
    """CAS segments, one per group, each with up to six reasons."""
    groups: dict[str, list[tuple[str, Decimal]]] = {}
    for group, reason, value in adjustments:
        if value != 0:
            groups.setdefault(group, []).append((reason, value))
    out = []
    for group, reasons in groups.items():
        for start in range(0, len(reasons), CAS_PER_SEGMENT):
            elements: list[Any] = []
            for reason, value in reasons[start:start + CAS_PER_SEGMENT]:
                elements += [reason, amount(value), None]
            out.append(segment("CAS", group, *elements[:-1]))
    return out


def claim_loops(packed: Packed, others: list[OtherPayer], patient: Resource) -> list[str]:
    """2320, 2330A and 2330B for each payer before the one billed."""
    out = []
    for other in others:
        where = f"Claim.insurance[{other.place - 1}].coverage"
        held = policy(other.coverage, where)
        subscriber = patient if held.relationship == "self" else packed.need(
            other.coverage.get("subscriber"), ("Patient", "RelatedPerson"), f"{where}.subscriber")
        family, given = person_name(subscriber, f"{where}.subscriber")
        has_lines = bool(other.answer.get("item"))
        if not has_lines and other.adjudicated is None:
            raise Missing("the earlier payer's answer needs a payment date",
                          f"Claim.insurance[{other.place - 1}].claimResponse")
        out += [segment("SBR", ORDER.get(other.place, "T"),
                        RELATIONSHIP.get(held.relationship, "G8"), held.group, None, None, None,
                        None, None, held.filing),
                *_cas(_x12_adjustments(other.answer.get("adjudication") or [])),
                segment("AMT", "D", amount(_money((other.answer.get("payment") or {})
                                                  .get("amount")))),
                segment("OI", None, None, "Y", None, None, "Y"),
                segment("NM1", "IL", "1", family, given, None, None, None, "MI", held.member),
                segment("NM1", "PR", "2", _payer_name(other.payer), None, None, None, None,
                        "PI", other.payer_id)]
        if not has_lines:
            out.append(segment("DTP", "573", "D8", other.adjudicated))
    return out


def _payer_name(payer: Resource) -> str:
    name = payer.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Missing("the earlier payer needs a name", "Claim.insurance.coverage.payor.name")
    return name.strip()


def line_loops(others: list[OtherPayer], item: dict[str, Any], where: str) -> list[str]:
    """2430 for one line: what each earlier payer did with it (none when its answer has no
    lines, or none for this one)."""
    out: list[str] = []
    sequence = int(item.get("sequence", 0))
    code = coding(item.get("productOrService"), (CPT, *HCPCS))
    if code is None:
        raise Missing(f"{where} has no CPT or HCPCS code", f"{where}.productOrService")
    charge = item_amount(item, where)
    units = Decimal(str((item.get("quantity") or {}).get("value", 1)))
    for other in others:
        line = next((i for i in other.answer.get("item") or []
                     if int(i.get("itemSequence", 0)) == sequence), None)
        if line is None:
            continue
        entries = line.get("adjudication") or []
        paid = next((_money(e.get("amount")) for e in entries
                     if (found := coding(e.get("category"), (ADJUDICATION,)))
                     and found["code"] == "benefit"), ZERO)
        adjustments = _x12_adjustments(entries) or _fhir_adjustments(entries, charge)
        if other.adjudicated is None:
            raise Missing("the earlier payer's answer needs a payment date",
                          f"Claim.insurance[{other.place - 1}].claimResponse")
        out += [segment("SVD", other.payer_id, amount(paid), ("HC", str(code["code"])), None,
                        amount(units)),
                *_cas(adjustments),
                segment("DTP", "573", "D8", other.adjudicated)]
    return out
