"""Reading acknowledgements: the 999 (005010X231A1) and the 277CA (005010X214).

A 999 answers an interchange's syntax: per transaction set (``AK2``), the segments in
error (``IK3``: segment id, position, loop, code) and their elements (``IK4``: position,
data element number, code), and the verdict (``IK5``: A accepted, E accepted with
errors, R/M/W/X rejected). The bad value an ``IK4`` may quote is never kept.

A 277CA answers claim by claim (the HL of level PT): ``TRN*2`` echoes the claim's
CLM01, ``STC`` gives the status category (A1/A2 accepted, A3/A4/A6/A7/A8 rejected) with
the status code and entity, ``REF*1K`` the payer's claim number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.adapters.x12.segments import Interchange, Segment, X12Error
from fhir_server.adapters.x12.validate import ELEMENT_ERRORS, SEGMENT_ERRORS

REJECTED_CATEGORIES = {"A3", "A4", "A6", "A7", "A8"}
ACCEPTED_CODES = {"A", "E"}


@dataclass
class SetAcknowledgement:
    """The 999's verdict on one transaction set."""

    set_id: str  # AK201
    control: str  # AK202: the ST02 acknowledged
    code: str  # IK501
    problems: list[str] = field(default_factory=list)  # "NM1 segment 12 (loop 2010BA): ..."

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED_CODES


@dataclass
class GroupAcknowledgement:
    group_control: str  # AK102: the GS06 acknowledged
    code: str  # AK901
    sets: list[SetAcknowledgement] = field(default_factory=list)


def read_999(interchange: Interchange) -> list[GroupAcknowledgement]:
    out: list[GroupAcknowledgement] = []
    for transaction in interchange.transactions():
        if transaction.set_id != "999":
            raise X12Error(f"Expected a 999, not a {transaction.set_id[:3]}", segment="ST")
        group: GroupAcknowledgement | None = None
        current: SetAcknowledgement | None = None
        problem: str | None = None
        for seg in transaction.segments:
            if seg.id == "AK1":
                group = GroupAcknowledgement(seg.get(2), "")
                out.append(group)
            elif seg.id == "AK2":
                if group is None:
                    raise seg.error("AK2 before AK1")
                current = SetAcknowledgement(seg.get(1), seg.get(2), "")
                group.sets.append(current)
            elif seg.id == "IK3" and current is not None:
                problem = _segment_problem(seg)
                current.problems.append(problem)
            elif seg.id == "IK4" and current is not None:
                code = seg.get(3)
                element = seg.parts(1)
                text = (f"element {'-'.join(element)} ({seg.get(2) or 'data element'}): "
                        f"{ELEMENT_ERRORS.get(code, 'data element error')} (IK403 {code})")
                if current.problems and problem is not None:
                    current.problems[-1] = f"{current.problems[-1]}; {text}"
                else:
                    current.problems.append(text)
            elif seg.id == "IK5" and current is not None:
                current.code = seg.get(1)
                current = None
                problem = None
            elif seg.id == "AK9" and group is not None:
                group.code = seg.get(1)
    if not out:
        raise X12Error("The 999 acknowledges no functional group (AK1)", segment="AK1")
    return out


def _segment_problem(seg: Segment) -> str:
    code = seg.get(4)
    loop = f" (loop {seg.get(3)})" if seg.get(3) else ""
    return (f"{seg.get(1)[:3]} segment {seg.get(2)}{loop}: "
            f"{SEGMENT_ERRORS.get(code, 'segment error')} (IK304 {code})")


@dataclass
class ClaimStatus:
    """A 277's word on one claim (a 277CA's, or a claim status response's)."""

    control: str  # TRN02 at the claim level: the 837P's CLM01
    statuses: list[tuple[str, str, str]] = field(default_factory=list)  # (category, code, entity)
    payer_claim: str | None = None  # REF*1K
    position: int = 0

    @property
    def rejected(self) -> bool:
        return any(category in REJECTED_CATEGORIES for category, _, _ in self.statuses)


# The HL levels a 277 speaks of one claim at: a 277CA's patient (PT); a 277's (005010X212)
# subscriber (22) or dependent (23).
CLAIM_LEVELS = frozenset({"PT", "22", "23"})


def read_277ca(interchange: Interchange) -> list[ClaimStatus]:
    """The claims a 277 speaks of: a 277CA (005010X214) or a claim status response
    (005010X212), both of which give each claim's status in STC segments after its TRN*2."""
    out: list[ClaimStatus] = []
    for transaction in interchange.transactions():
        if transaction.set_id != "277":
            raise X12Error(f"Expected a 277, not a {transaction.set_id[:3]}", segment="ST")
        level = ""
        claim: ClaimStatus | None = None
        for seg in transaction.segments:
            if seg.id == "HL":
                level = seg.get(3)
                claim = None
            elif seg.id == "TRN" and level in CLAIM_LEVELS:
                if not seg.get(2):
                    raise seg.error("TRN02 (the claim's patient control number) is required", 2)
                claim = ClaimStatus(seg.get(2), position=seg.position)
                out.append(claim)
            elif seg.id == "STC" and claim is not None:
                parts = [*seg.parts(1), "", "", ""]
                if not parts[0]:
                    raise seg.error("STC01 must give a status category code", 1)
                claim.statuses.append((parts[0], parts[1], parts[2]))
            elif seg.id == "REF" and claim is not None and seg.get(1) == "1K":
                claim.payer_claim = seg.get(2)
    return out
