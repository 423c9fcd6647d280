"""A corrected claim (``Claim/[id]/$correct``): the claim that replaces or voids one a payer
has answered.

X12's claim frequency type code (837P CLM05-3) says which: 7 replacement of a prior claim,
8 void/cancel of a prior claim (1, an original claim, is every other). FHIR R4's Claim has
no element for it: it is the extension ``CLAIM_FREQUENCY`` (``valueCode``). The correction
names the claim it corrects in ``related`` (relationship ``prior``) with the payer's own
number for it (an 835's CLP07, or a FHIR payer's ClaimResponse id) as ``related.reference``,
which the 837P sends as ``REF*F8``. It keeps the original's bill identifiers, so that its
answer settles the same Invoice in the original's place (``claim_submit.py``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.revenue.cob import RELATED_CLAIM
from fhir_server.revenue.records import Resource
from fhir_server.terminology.systems import SERVER_URI

CLAIM_FREQUENCY = f"{SERVER_URI}/StructureDefinition/claim-frequency"
CORRECTIONS = {"7": "replacement of prior claim", "8": "void/cancel of prior claim"}


def frequency_of(claim: Resource) -> str:
    """CLM05-3: 7 or 8 for a correction, else 1 (original)."""
    code = next((str(e.get("valueCode")) for e in claim.get("extension") or []
                 if e.get("url") == CLAIM_FREQUENCY), "1")
    return code if code in CORRECTIONS else "1"


def corrected_claim(original: Resource, content: Resource, *, frequency: str,
                    payer_number: Any, id_: str, created: str) -> Resource:
    """The claim that replaces (7) or voids (8) ``original``: ``content`` (the original's,
    or corrected by the caller) with the original's bill identifiers, ``related`` the
    original (relationship ``prior``, ``reference`` the payer's number for it, an
    Identifier), and the frequency."""
    bill_ids = list(original.get("identifier") or [])
    extensions = [e for e in content.get("extension") or [] if e.get("url") != CLAIM_FREQUENCY]
    related: dict[str, Any] = {
        "claim": {"reference": f"Claim/{original['id']}"},
        "relationship": {"coding": [{"system": RELATED_CLAIM, "code": "prior",
                                     "display": "Prior Claim"}]}}
    if payer_number:
        related["reference"] = payer_number
    out: Resource = {k: v for k, v in content.items()
                     if k not in ("id", "meta", "identifier", "related", "extension", "text")}
    out.update({"id": id_, "identifier": bill_ids, "created": created,
                "extension": [*extensions, {"url": CLAIM_FREQUENCY, "valueCode": frequency}],
                "related": [related]})
    return out


def replaced_claim_ref(claim: Resource) -> str | None:
    """The Claim a correction replaces or voids (None: not a correction)."""
    if frequency_of(claim) == "1":
        return None
    for related in claim.get("related") or []:
        ref = (related.get("claim") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Claim/"):
            return ref
    return None
