"""``Claim/[id]/$correct``: a claim the payer answered, replaced (frequency 7) or voided (8).

The claim must have a complete answer (a claim not yet adjudicated is corrected by sending
it again with ``$submit``). The correction (``revenue/corrections.py``) is the original's
content, or the corrected Claim given as ``claim`` (same patient), with the original's bill
identifiers, ``related`` the original with the payer's number for it, and the frequency;
it is stored and sent as ``Claim/$submit`` sends any claim (``claim_submit.py``): to the
payer's FHIR endpoint, to its clearinghouse as an 837P with CLM05-3 the frequency and
``REF*F8`` the payer's claim number, or adjudicated here when this server is the payer. A
FHIR or local answer to it settles the Invoice in the original's place; over X12 the
payer's 835 reverses the original (CLP02 22) and pays the correction.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server.core.errors import Invalid, NotFound, Unprocessable
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.claim_submit import complete_response
from fhir_server.operations.claim_submit import run as submit
from fhir_server.revenue.corrections import CORRECTIONS, corrected_claim
from fhir_server.revenue.records import Resource
from fhir_server.service import interactions as svc
from fhir_server.storage.model import instant, now_ms
from fhir_server.terminology.systems import PAYER_CLAIM_NUMBER


async def run(call: Call) -> Resource:
    frequency = call.one("frequency")
    if frequency not in CORRECTIONS:
        raise Invalid("frequency must be 7 (replacement of the claim) or 8 (void)",
                      expression=["Parameters.parameter.where(name = 'frequency')"])
    assert call.id_ is not None
    _, original = await svc.current_resource(call.repo, "Claim", call.id_)
    if original is None or not await call.may_see("Claim", original):
        raise NotFound(f"Claim/{call.id_[:64]} is not known")
    answer = await complete_response(call, f"Claim/{original['id']}")
    if answer is None:
        raise Unprocessable(f"Claim/{original['id']} has no answer from its payer to correct: "
                            "send it again with Claim/$submit instead", code="business-rule")
    content = call.one("claim") or original
    if content.get("resourceType") != "Claim":
        raise Unprocessable("claim must be a Claim",
                            expression=["Parameters.parameter.where(name = 'claim')"])
    if (content.get("patient") or {}).get("reference") != (original.get("patient") or {}).get(
            "reference"):
        raise Unprocessable("The corrected claim must be for the same patient",
                            expression=["Claim.patient"], code="business-rule")
    correction = corrected_claim(original, content, frequency=frequency,
                                 payer_number=_payer_number(answer), id_=str(uuid.uuid4()),
                                 created=instant(now_ms()))
    return await submit(Call(repo=call.repo, settings=call.settings, services=call.services,
                             params={"resource": [correction]}, authorize=call.authorize,
                             sees=call.sees, patients=call.patients))


def _payer_number(answer: Resource) -> dict[str, Any] | None:
    """The payer's number for the claim, as an Identifier: an 835's CLP07, else the id a
    FHIR payer gave its ClaimResponse."""
    identifiers = [i for i in answer.get("identifier") or [] if i.get("value")]
    chosen = next((i for i in identifiers if i.get("system") == PAYER_CLAIM_NUMBER),
                  identifiers[0] if identifiers else None)
    return {k: chosen[k] for k in ("system", "value") if k in chosen} if chosen else None


CLAIM_CORRECT = Operation(
    id="Claim-correct", code="correct", title="Replace or void a claim the payer answered",
    description="Makes the claim that replaces (frequency 7) or voids (8) this one: its "
    "content, or the corrected Claim given, with this claim's bill identifiers, related to "
    "it with the payer's number for it, and sends it as Claim/$submit does (over X12: "
    "CLM05-3 the frequency, REF*F8 the payer's claim number). Returns the ClaimResponse.",
    resource=("Claim",), type_level=False, instance=True,
    requires=(("Claim", "c"),),
    parameters=(
        Param("frequency", "in", 1, "1", "code",
              "7: replacement of the claim; 8: void/cancel of the claim"),
        Param("claim", "in", 0, "1", "Claim", "The corrected claim (default: this one)"),
        Param("return", "out", 1, "1", "ClaimResponse", "The correction's ClaimResponse"),
    ),
    run=run)
