"""Reading an 835 (005010X221A1) health care claim payment/advice.

Per transaction set: the payment (``BPR`` amount, credit/debit, method, date; ``TRN`` trace
number and originator), the payer (``N1*PR``, ``REF*2U``) and payee (``N1*PE``), one
``ClaimPayment`` per ``CLP`` with its ``CAS`` adjustments and ``SVC`` service lines
(``CAS``, ``REF*6R``, ``AMT*B6``, ``DTM*472``), and the ``PLB`` provider adjustments.

The 835's balancing rules are checked. A payment whose total does not add up
(``BPR02`` = the claims' payments - the provider adjustments) is refused whole, before
anything is posted: its amount is what the bank moved, and no one claim can be blamed. A
claim payment that does not balance (per service line, charge - paid = its adjustments;
per claim, charge - paid = all its adjustments, claim and service level) is only marked
(``ClaimPayment.unbalanced``, what does not match, with the amounts), so the poster can
set it aside and post the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from fhir_server.adapters.x12.segments import Interchange, Segment, X12Error

ZERO = Decimal(0)
PATIENT_GROUP = "PR"  # CAS group code: patient responsibility


@dataclass
class Adjustment:
    group: str  # CAS01: CO, PR, OA, PI, CR
    reason: str  # CARC
    amount: Decimal
    quantity: Decimal | None = None


@dataclass
class ServicePayment:
    qualifier: str  # SVC01-1: HC, ...
    code: str  # SVC01-2
    modifiers: list[str]
    charge: Decimal
    paid: Decimal
    units: Decimal | None
    line: str | None = None  # REF*6R: the 837P line's control number
    allowed: Decimal | None = None  # AMT*B6
    served: str | None = None  # DTM*472, CCYYMMDD
    adjustments: list[Adjustment] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # LQ*HE: remittance advice remark codes


@dataclass
class ClaimPayment:
    control: str  # CLP01: the patient control number the 837P sent in CLM01
    status: str  # CLP02
    charge: Decimal
    paid: Decimal
    patient_responsibility: Decimal
    payer_claim: str  # CLP07
    position: int  # where the CLP segment is
    adjustments: list[Adjustment] = field(default_factory=list)  # claim level
    services: list[ServicePayment] = field(default_factory=list)
    unbalanced: str | None = None  # what does not add up, with the amounts; None: balanced

    def all_adjustments(self) -> list[Adjustment]:
        return [*self.adjustments, *(a for s in self.services for a in s.adjustments)]


@dataclass
class ProviderAdjustment:
    reason: str  # PLB03-1
    reference: str  # PLB03-2
    amount: Decimal  # positive: taken from the payment


@dataclass
class Remittance:
    total: Decimal  # BPR02
    credit: bool  # BPR03 C
    method: str  # BPR04: ACH, CHK, BOP, FWT, NON
    paid_on: str  # BPR16, CCYYMMDD
    trace: str  # TRN02: check or EFT trace number
    originator: str  # TRN03
    payer_name: str = ""
    payer_ids: list[str] = field(default_factory=list)  # N1*PR N104, REF*2U, TRN03
    payee_name: str = ""
    payee_npi: str | None = None
    claims: list[ClaimPayment] = field(default_factory=list)
    provider_adjustments: list[ProviderAdjustment] = field(default_factory=list)


def number(seg: Segment, index: int, *, required: bool = True) -> Decimal | None:
    value = seg.get(index)
    if not value:
        if required:
            raise seg.error(f"{seg.id}{index:02d} is required", index)
        return None
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise seg.error(f"{seg.id}{index:02d} is not a number", index) from None
    if not result.is_finite():
        raise seg.error(f"{seg.id}{index:02d} is not a number", index)
    return result


def _money(seg: Segment, index: int) -> Decimal:
    value = number(seg, index)
    assert value is not None
    return value


def _adjustments(seg: Segment) -> list[Adjustment]:
    group = seg.get(1)
    if group not in ("CO", "PR", "OA", "PI", "CR"):
        raise seg.error("CAS01 must be a claim adjustment group code (CO, PR, OA, PI, CR)", 1)
    out = []
    for start in range(2, 20, 3):
        if not seg.get(start):
            continue
        out.append(Adjustment(group, seg.get(start), _money(seg, start + 1),
                              number(seg, start + 2, required=False)))
    if not out:
        raise seg.error("CAS needs a reason code and an amount", 2)
    return out


def read_835(interchange: Interchange) -> list[Remittance]:
    out = []
    for transaction in interchange.transactions():
        if transaction.set_id != "835":
            raise X12Error(f"Expected 835 transaction sets, not {transaction.set_id[:3]}",
                           segment="ST")
        try:
            out.append(_transaction(transaction.segments))
        except Unbalanced as error:
            error.interchange, error.transaction = interchange.control, transaction.control
            raise
    if not out:
        raise X12Error("The interchange holds no 835 transaction set", segment="ST")
    return out


def _transaction(segments: list[Segment]) -> Remittance:
    if not segments or segments[0].id != "BPR":
        raise X12Error("An 835 starts with its BPR segment", segment="BPR",
                       position=segments[0].position if segments else None)
    bpr = segments[0]
    if bpr.get(3) not in ("C", "D"):
        raise bpr.error("BPR03 must be C (credit) or D (debit)", 3)
    paid_on = bpr.get(16)
    if len(paid_on) != 8 or not paid_on.isdigit():
        raise bpr.error("BPR16 must be the payment date (CCYYMMDD)", 16)
    remittance = Remittance(total=_money(bpr, 2), credit=bpr.get(3) == "C", method=bpr.get(4),
                            paid_on=paid_on, trace="", originator="")
    party = None
    claim: ClaimPayment | None = None
    service: ServicePayment | None = None
    for seg in segments[1:]:
        if seg.id == "TRN" and not remittance.trace:
            remittance.trace, remittance.originator = seg.get(2), seg.get(3)
            if not remittance.trace:
                raise seg.error("TRN02 (the check or EFT trace number) is required", 2)
        elif seg.id == "N1" and claim is None:
            party = seg.get(1)
            if party == "PR":
                remittance.payer_name = seg.get(2)
                if seg.get(4):
                    remittance.payer_ids.append(seg.get(4))
            elif party == "PE":
                remittance.payee_name = seg.get(2)
                remittance.payee_npi = seg.get(4) if seg.get(3) == "XX" else None
        elif seg.id == "REF" and claim is None and party == "PR" and seg.get(1) == "2U":
            remittance.payer_ids.append(seg.get(2))
        elif seg.id == "CLP":
            service = None
            claim = _claim(seg)
            remittance.claims.append(claim)
        elif seg.id == "SVC":
            if claim is None:
                raise seg.error("SVC outside a claim (CLP) loop")
            service = _service(seg)
            claim.services.append(service)
        elif seg.id == "CAS":
            if claim is None:
                raise seg.error("CAS outside a claim (CLP) loop")
            (service.adjustments if service else claim.adjustments).extend(_adjustments(seg))
        elif service is not None and seg.id == "REF" and seg.get(1) == "6R":
            service.line = seg.get(2)
        elif service is not None and seg.id == "AMT" and seg.get(1) == "B6":
            service.allowed = _money(seg, 2)
        elif service is not None and seg.id == "DTM" and seg.get(1) == "472":
            service.served = seg.get(2)
        elif service is not None and seg.id == "LQ" and seg.get(1) == "HE" and seg.get(2):
            service.remarks.append(seg.get(2))
        elif seg.id == "PLB":
            remittance.provider_adjustments += _provider_adjustments(seg)
    if not remittance.trace:
        raise X12Error("The 835 has no TRN segment (trace number)", segment="TRN")
    if remittance.originator:
        remittance.payer_ids.append(remittance.originator)
    _balance(bpr, remittance)
    return remittance


def _claim(seg: Segment) -> ClaimPayment:
    if not seg.get(1):
        raise seg.error("CLP01 (the patient control number) is required", 1)
    return ClaimPayment(control=seg.get(1), status=seg.get(2), charge=_money(seg, 3),
                        paid=_money(seg, 4),
                        patient_responsibility=number(seg, 5, required=False) or ZERO,
                        payer_claim=seg.get(7), position=seg.position)


def _service(seg: Segment) -> ServicePayment:
    parts = seg.parts(1)
    if len(parts) < 2:
        raise seg.error("SVC01 must name the procedure (qualifier:code)", 1)
    return ServicePayment(qualifier=parts[0], code=parts[1], modifiers=parts[2:6],
                          charge=_money(seg, 2), paid=_money(seg, 3),
                          units=number(seg, 5, required=False))


def _provider_adjustments(seg: Segment) -> list[ProviderAdjustment]:
    out = []
    for start in range(3, 15, 2):
        if not seg.get(start):
            continue
        reason = seg.parts(start)
        out.append(ProviderAdjustment(reason[0], reason[1] if len(reason) > 1 else "",
                                      _money(seg, start + 1)))
    return out


class Unbalanced(X12Error):
    """BPR02 does not equal the claims' payments less the provider adjustments: the
    amounts, and (set by ``read_835``) the ISA13 and ST02 control numbers."""

    def __init__(self, bpr: Segment, total: Decimal, expected: Decimal) -> None:
        super().__init__("BPR02 must equal the claims' payments less the provider adjustments "
                         "(PLB)", segment=bpr.id, position=bpr.position, element=2)
        self.total, self.expected = total, expected
        self.interchange = self.transaction = ""


def _balance(bpr: Segment, remittance: Remittance) -> None:
    for claim in remittance.claims:
        claim.unbalanced = imbalance(claim)
    expected = (sum((c.paid for c in remittance.claims), ZERO)
                - sum((p.amount for p in remittance.provider_adjustments), ZERO))
    if remittance.total != expected:
        raise Unbalanced(bpr, remittance.total, expected)


def imbalance(claim: ClaimPayment) -> str | None:
    """What does not balance in a claim payment, in words with the amounts (None: it
    balances): its first unbalanced service line, else the claim."""
    for n, service in enumerate(claim.services, start=1):
        adjusted = sum((a.amount for a in service.adjustments), ZERO)
        if service.charge - service.paid != adjusted:
            return (f"service line {n} ({service.code[:12]}): SVC02 charge {service.charge:.2f} - "
                    f"SVC03 paid {service.paid:.2f} = {service.charge - service.paid:.2f}, but its "
                    f"adjustments (CAS) total {adjusted:.2f}")
    adjusted = sum((a.amount for a in claim.all_adjustments()), ZERO)
    if claim.charge - claim.paid != adjusted:
        return (f"CLP03 charge {claim.charge:.2f} - CLP04 paid {claim.paid:.2f} = "
                f"{claim.charge - claim.paid:.2f}, but its adjustments (CAS) total {adjusted:.2f}")
    return None
