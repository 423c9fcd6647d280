"""Denials in a payer's answer: which lines the payer refused (wholly or in part), why,
and the kind of work each needs.

A ClaimResponse's adjustments carry X12 claim adjustment reason codes (CARC) with their
group (CO, PR, OA, PI, CR): from an 835 as received (``operations/remittance_claims.py``),
or a FHIR payer's ``adjudication.reason`` in the CARC system. A line is denied when one of
its adjustments has a CARC that is not part of ordinary settlement (``SETTLEMENT``: the
member's deductible, coinsurance and copay, the contracted fee, the earlier payers' part,
sequestration); the claim is, when its own adjustments have one. Each denial falls in the
category of its first such CARC (``CATEGORIES``: eligibility, authorization, coding,
duplicate, timely filing; any other is ``other``).

``CARC_TEXT`` holds the X12 wording of the codes this server names a category for, of the
settlement codes and of other frequent denials; a code outside it is shown by its number
(the code list itself is X12's, at https://x12.org/codes/claim-adjustment-reason-codes).
``RARC_TEXT`` does the same for the commonest remark codes (an 835's LQ*HE), which the
ClaimResponse carries as ``processNote``s that its lines name (``item.noteNumber``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.core.money import decimal_of
from fhir_server.terminology.systems import SERVER_URI, X12_CARC, X12_CAS_GROUP

DENIAL_CATEGORY = f"{SERVER_URI}/CodeSystem/denial-category"
CATEGORY_DISPLAY = {"eligibility": "Eligibility", "authorization": "Authorization",
                    "coding": "Coding", "duplicate": "Duplicate",
                    "timely-filing": "Timely filing", "other": "Other"}
# Ordinary settlement, not a denial: deductible, coinsurance, copay, the prior payers'
# part, the contracted fee, sequestration.
SETTLEMENT = frozenset({"1", "2", "3", "23", "45", "253"})
CATEGORIES: dict[str, str] = {
    **dict.fromkeys(("22", "26", "27", "31", "109", "140", "200", "204"), "eligibility"),
    **dict.fromkeys(("15", "39", "197", "198", "288"), "authorization"),
    **dict.fromkeys(("4", "5", "6", "7", "8", "9", "10", "11", "12", "16", "146", "181",
                     "182"), "coding"),
    "18": "duplicate",
    "29": "timely-filing",
}
CARC_TEXT: dict[str, str] = {
    "1": "Deductible Amount.",
    "2": "Coinsurance Amount.",
    "3": "Co-payment Amount.",
    "4": "The procedure code is inconsistent with the modifier used.",
    "5": "The procedure code/type of bill is inconsistent with the place of service.",
    "6": "The procedure/revenue code is inconsistent with the patient's age.",
    "7": "The procedure/revenue code is inconsistent with the patient's gender.",
    "8": "The procedure code is inconsistent with the provider type/specialty (taxonomy).",
    "9": "The diagnosis is inconsistent with the patient's age.",
    "10": "The diagnosis is inconsistent with the patient's gender.",
    "11": "The diagnosis is inconsistent with the procedure.",
    "12": "The diagnosis is inconsistent with the provider type.",
    "15": "The authorization number is missing, invalid, or does not apply to the billed "
          "services or provider.",
    "16": "Claim/service lacks information or has submission/billing error(s).",
    "18": "Exact duplicate claim/service.",
    "22": "This care may be covered by another payer per coordination of benefits.",
    "23": "The impact of prior payer(s) adjudication including payments and/or adjustments.",
    "26": "Expenses incurred prior to coverage.",
    "27": "Expenses incurred after coverage terminated.",
    "29": "The time limit for filing has expired.",
    "31": "Patient cannot be identified as our insured.",
    "39": "Services denied at the time authorization/pre-certification was requested.",
    "45": "Charge exceeds fee schedule/maximum allowable or contracted/legislated fee "
          "arrangement.",
    "109": "Claim/service not covered by this payer/contractor. You must send the "
           "claim/service to the correct payer/contractor.",
    "146": "Diagnosis was invalid for the date(s) of service reported.",
    "181": "Procedure code was invalid on the date of service.",
    "182": "Procedure modifier was invalid on the date of service.",
    "197": "Precertification/notification/authorization/pre-treatment absent.",
    "198": "Precertification/notification/authorization/pre-treatment exceeded.",
    "200": "Expenses incurred during lapse in coverage.",
    "204": "This service/equipment/drug is not covered under the patient's current benefit "
           "plan.",
    "253": "Sequestration - reduction in federal payment.",
    # Other frequent denials (category other unless CATEGORIES says otherwise).
    "19": "This is a work-related injury/illness and thus the liability of the Worker's "
          "Compensation Carrier.",
    "24": "Charges are covered under a capitation agreement/managed care plan.",
    "35": "Lifetime benefit maximum has been reached.",
    "50": "These are non-covered services because this is not deemed a 'medical necessity' by "
          "the payer.",
    "55": "Procedure/treatment/drug is deemed experimental/investigational by the payer.",
    "58": "Treatment was deemed by the payer to have been rendered in an inappropriate or "
          "invalid place of service.",
    "96": "Non-covered charge(s).",
    "97": "The benefit for this service is included in the payment/allowance for another "
          "service/procedure that has already been adjudicated.",
    "119": "Benefit maximum for this time period or occurrence has been reached.",
    "140": "Patient/Insured health identification number and name do not match.",
    "151": "Payment adjusted because the payer deems the information submitted does not "
           "support this many/frequency of services.",
    "167": "This (these) diagnosis(es) is (are) not covered.",
    "234": "This procedure is not paid separately.",
    "252": "An attachment/other documentation is required to adjudicate this claim/service.",
    "288": "Referral absent.",
}


# Remittance advice remark codes (RARC, an 835's LQ*HE) this server knows the text of; the
# list is CMS's (https://x12.org/codes/remittance-advice-remark-codes).
RARC_TEXT: dict[str, str] = {
    "M15": "Separately billed services/tests have been bundled as they are considered "
           "components of the same procedure. Separate payment is not allowed.",
    "M51": "Missing/incomplete/invalid procedure code(s).",
    "M76": "Missing/incomplete/invalid diagnosis or condition.",
    "M80": "Not covered when performed during the same session/date as a previously "
           "processed service for the patient.",
    "MA04": "Secondary payment cannot be considered without the identity of or payment "
            "information from the primary payer. The information was either not reported or "
            "was illegible.",
    "MA130": "Your claim contains incomplete and/or invalid information, and no appeal rights "
             "are afforded because the claim is unprocessable. Submit a new claim with the "
             "complete/correct information.",
    "N30": "Patient ineligible for this service.",
    "N54": "Claim information is inconsistent with pre-certified/authorized services.",
    "N56": "Procedure code billed is not correct/valid for the services billed or the date of "
           "service billed.",
    "N130": "Consult plan benefit documents/guidelines for information about restrictions for "
            "this service.",
    "N290": "Missing/incomplete/invalid rendering provider primary identifier.",
    "N479": "Missing Explanation of Benefits (Coordination of Benefits or Medicare Secondary "
            "Payer).",
}


def carc_text(code: str) -> str | None:
    return CARC_TEXT.get(code)


def remark_note(code: str) -> str:
    """A RARC as a ClaimResponse ``processNote`` text: the code, and its text when known."""
    text = RARC_TEXT.get(code)
    return f"RARC {code}" + (f": {text}" if text else "")


@dataclass(frozen=True)
class Reason:
    group: str
    code: str
    amount: Decimal

    def said(self) -> str:
        text = CARC_TEXT.get(self.code)
        return f"{self.group}-{self.code}" + (f" {text}" if text else "")


@dataclass(frozen=True)
class Denial:
    """A line (``line``: its item sequence; None: the whole claim) the payer refused."""

    line: int | None
    reasons: list[Reason]
    remarks: tuple[str, ...] = ()  # the line's remark notes (``remark_note``)

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.reasons[0].code, "other")

    @property
    def amount(self) -> Decimal:
        return sum((r.amount for r in self.reasons), Decimal(0))

    @property
    def item(self) -> str:
        return "claim" if self.line is None else f"line:{self.line}"


def _coded(concept: Any, system: str) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if coding.get("system") == system and coding.get("code"):
            return str(coding["code"])
    return None


def _reasons(entries: list[dict[str, Any]]) -> list[Reason]:
    """The denying adjustments among a line's (or the claim's) adjudication entries."""
    out = []
    for entry in entries:
        code = _coded(entry.get("reason"), X12_CARC)
        if code is None or code in SETTLEMENT:
            continue
        group = _coded(entry.get("category"), X12_CAS_GROUP) or "CO"
        out.append(Reason(group, code, decimal_of((entry.get("amount") or {}).get("value", 0))))
    return out


def denials(response: dict[str, Any]) -> list[Denial]:
    """The claim's and each line's denials in a payer's answer, claim first."""
    out = []
    claim_level = _reasons(response.get("adjudication") or [])
    if claim_level:
        out.append(Denial(None, claim_level))
    notes = {n.get("number"): str(n.get("text", "")) for n in response.get("processNote") or []}
    for item in response.get("item") or []:
        reasons = _reasons(item.get("adjudication") or [])
        if reasons:
            remarks = tuple(notes[n] for n in item.get("noteNumber") or [] if n in notes)
            out.append(Denial(int(item.get("itemSequence", 0)), reasons, remarks))
    return out


def reason_coding(code: str) -> dict[str, str]:
    """A CARC as a Coding, with the code's text when this server knows it."""
    text = CARC_TEXT.get(code)
    return {"system": X12_CARC, "code": code, **({"display": text} if text else {})}
