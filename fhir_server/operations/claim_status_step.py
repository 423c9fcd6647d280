"""Claim status inquiries (276/277, 005010X212): a claim sent over X12 that waits too long
for its payer's answer is asked about.

Each poll round (``x12_poll.py``) looks for claims whose ClaimResponse (the one an X12
claim has, ``claim_submit.claim_response_id``) is still ``queued`` and has not changed for
``FHIR_CLAIM_STATUS_DAYS``, at most ``BATCH`` of them. For each, a 276 goes through the
clearinghouse of the claim's payer (``adapters/x12/claim_status.py``), and what the 277
says of the claim is recorded on its ClaimResponse, a new version in its history: the STC
codes in ``disposition`` and as a ``processNote``, the payer's claim number when given,
and the 276 and 277 kept as DocumentReferences naming it. That change also restarts the
wait: the claim is asked about again after as many days, while no 835 comes.

A 277 that says the claim was denied (category F2), rejected (A3, A4, A6, A7, A8), or that
the payer needs information (R categories) opens a work-denial Task about the claim
(``item`` ``claim-status``, category ``other``), saying so with the codes. A clearinghouse
that cannot be reached, or answers something else, is tried again at the next round.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fhir_server.adapters.x12.acks import REJECTED_CATEGORIES, ClaimStatus
from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError
from fhir_server.operations.claim_submit import claim_response_id, related_resources
from fhir_server.operations.common import commit_new, pack, route
from fhir_server.operations.interchanges import documents
from fhir_server.operations.worklist import Failure, open_task
from fhir_server.revenue.coverage import focal_coverage_ref
from fhir_server.revenue.denials import CATEGORY_DISPLAY, DENIAL_CATEGORY
from fhir_server.revenue.records import Resolver, Resource, local_patient, read_local
from fhir_server.revenue.states import ClaimOutcome, claim_outcome
from fhir_server.service import interactions as svc
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import PAYER_CLAIM_NUMBER

log = logging.getLogger("fhir_server.operations.x12_poll")
BATCH = 50  # claims asked about per round
STEP = "work-denial"
ITEM = "claim-status"
CATEGORY_WORDS = {"F2": "the claim was denied", "R": "the payer needs more information",
                  "A": "the claim was rejected"}


def _needs_work(category: str) -> str | None:
    """Why a status category needs a person (None: it does not)."""
    if category == "F2":
        return CATEGORY_WORDS["F2"]
    if category.startswith("R"):
        return CATEGORY_WORDS["R"]
    if category in REJECTED_CATEGORIES:
        return CATEGORY_WORDS["A"]
    return None


async def inquire_once(*, repo: Repository, settings: Settings, x12: Any) -> list[str]:
    """Ask about the claims waiting too long; the ClaimResponses updated, as references."""
    cutoff = instant(now_ms() - timedelta(days=settings.fhir_claim_status_days))
    waiting = await svc.find_resources(
        repo=repo, settings=settings, type_="ClaimResponse",
        criteria=[("outcome", ClaimOutcome.QUEUED.value), ("_lastUpdated", f"lt{cutoff}")],
        limit=BATCH)
    done = []
    for response in waiting:
        claim = await read_local(repo, (response.get("request") or {}).get("reference"))
        if claim is None or claim.get("resourceType") != "Claim" or \
                response["id"] != claim_response_id(str(claim["id"])):
            continue  # not a claim this server sent in X12
        try:
            if await _inquire(repo, settings, x12, claim, response):
                done.append(f"ClaimResponse/{response['id']}")
        except FhirError as error:  # tried again next round
            log.warning("claim status inquiry failed claim=%s status=%d", claim["id"],
                        error.status)
    return done


async def _inquire(repo: Repository, settings: Settings, x12: Any, claim: Resource,
                   response: Resource) -> bool:
    resolver = Resolver(repo, settings, claim)
    way = await route(repo, resolver, coverage_ref=focal_coverage_ref(claim),
                      insurer_ref=claim.get("insurer"))
    if way.endpoint is None or way.endpoint.partner is None:
        return False
    payer_claim = next((str(i["value"]) for i in response.get("identifier") or []
                        if i.get("system") == PAYER_CLAIM_NUMBER and i.get("value")), None)
    packed = pack({**claim, "id": claim["id"]}, await related_resources(resolver, claim, way))
    statuses, exchanged = await x12.claim_status(way.endpoint, {**packed, "id": claim["id"]},
                                                 payer_claim=payer_claim)
    status = next((s for s in statuses if s.control == claim["id"]), None)
    version, current = await svc.current_resource(repo, "ClaimResponse", response["id"])
    if current is None or claim_outcome(current) is not ClaimOutcome.QUEUED:
        return False  # answered meanwhile (an 835): the 277 changes nothing
    updated = _recorded({k: v for k, v in current.items() if k != "meta"}, status)
    patient = (claim.get("patient") or {}).get("reference")
    await commit_new(repo, settings, [(updated, version), *documents(
        exchanged, related=[f"ClaimResponse/{response['id']}", f"Claim/{claim['id']}"],
        subject=patient)])
    reason = _needs_work(status.statuses[0][0]) if status and status.statuses else None
    if status is not None and reason is not None:
        await open_task(repo=repo, settings=settings, step=STEP, focus=f"Claim/{claim['id']}",
                        item=ITEM, patient=local_patient(patient),
                        failure=_failure(claim, status, reason))
    return True


def _codes(status: ClaimStatus | None) -> str:
    if status is None or not status.statuses:
        return "no status for this claim"
    return ", ".join(f"{c}:{s}" + (f":{e}" if e else "") for c, s, e in status.statuses)[:200]


def _recorded(response: Resource, status: ClaimStatus | None) -> Resource:
    codes = _codes(status)
    notes = [n for n in response.get("processNote") or [] if isinstance(n, dict)]
    response["disposition"] = f"Claim status (277): {codes}"
    response["processNote"] = [*notes, {"number": len(notes) + 1, "type": "display",
                                        "text": f"277 of {instant(now_ms())[:10]}: {codes}"}]
    if status is not None and status.payer_claim:
        response["identifier"] = [{"system": PAYER_CLAIM_NUMBER, "value": status.payer_claim}]
    return response


def _failure(claim: Resource, status: ClaimStatus, reason: str) -> Failure:
    text = (f"The payer's claim status answer (277) for Claim/{claim['id']} says {reason} "
            f"(STC {_codes(status)}): see the claim status codes, correct the claim and send "
            "it again (Claim/[id]/$correct once answered), or call the payer, then complete "
            "this Task")
    kind = {"system": DENIAL_CATEGORY, "code": "other", "display": CATEGORY_DISPLAY["other"]}
    return Failure(reason=text, kind=kind, outcome={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "business-rule", "details": {"coding": [kind],
                                                                  "text": _codes(status)},
         "expression": ["ClaimResponse.disposition"]}]})
