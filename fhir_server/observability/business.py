"""Business counters: what a clinic's revenue cycle did, for the dashboards.

The one module that knows which resource changes and operation results mean a booking,
a bill or a claim; it is told of them from two generic places: committed writes with
their write rules (``rules.applying``: the change's content before and after) and
finished operations (``api/operations.py``: the operation's name and its result). Logins
come from the authorization server's login hook, new bills from ``$generate-bill`` and
claims' answers from ``Claim/$submit`` (where they are committed: a resubmission answered
with the earlier answer is not a new claim).
Labels are fixed words, never content.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from fhir_server.revenue.states import (
    ADJUDICATED,
    AppointmentStatus,
    ClaimOutcome,
    InvoiceStatus,
    claim_outcome,
)

APPOINTMENTS = Counter("fhir_appointments", "Appointments booked or cancelled.", ["event"])
BILLS_ISSUED = Counter("fhir_bills_issued", "Invoices issued (bills of visits).")
CLAIMS = Counter("fhir_claims", "Claims submitted to payers, and the payers' adjudications: "
                 "adjudicated (settled in full or in part) or denied (not adjudicated).",
                 ["event"])
ELIGIBILITY = Counter("fhir_eligibility_checks", "Eligibility checks by outcome: eligible, "
                      "not-eligible, error (the payer answered with errors), failed (no "
                      "answer).", ["outcome"])
LOGINS = Counter("fhir_logins", "Sign-ins and client authentications.", ["outcome"])

ELIGIBILITY_OPERATIONS = frozenset({"CoverageEligibilityRequest-submit", "Coverage-eligibility"})


def _status(resource: dict[str, Any] | None) -> str | None:
    return None if resource is None else resource.get("status")


def change_committed(type_: str, before: dict[str, Any] | None,
                     after: dict[str, Any] | None) -> None:
    """A resource written (``after`` None: deleted) in place of ``before``."""
    status, was = _status(after), _status(before)
    if status == was:
        return
    if type_ == "Appointment" and status in (AppointmentStatus.BOOKED,
                                             AppointmentStatus.CANCELLED):
        APPOINTMENTS.labels(status).inc()
    elif type_ == "Invoice" and status == InvoiceStatus.ISSUED \
            and was != InvoiceStatus.BALANCED:
        BILLS_ISSUED.inc()


def writes_committed(changes: Sequence[Any], side_writes: Sequence[Any]) -> None:
    """``rules.applying``'s observer: the rule-checked changes and their side writes."""
    for change in changes:
        change_committed(change.type_, change.before, change.after)
    for side in side_writes:  # a rule's own write: before is the rule's to know, not ours
        change_committed(side.type_, None, side.resource)


def operation_finished(operation_id: str, result: dict[str, Any] | None) -> None:
    """An operation answered ``result`` (None: it failed)."""
    if operation_id in ELIGIBILITY_OPERATIONS:
        ELIGIBILITY.labels(_eligibility_outcome(result)).inc()


def _eligibility_outcome(result: dict[str, Any] | None) -> str:
    if result is None:
        return "failed"
    if result.get("error") or result.get("outcome") == "error":
        return "error"
    inforce = any(i.get("inforce") for i in result.get("insurance") or [])
    return "eligible" if inforce else "not-eligible"


def claim_answered(response: dict[str, Any]) -> None:
    """``Claim/$submit`` committed a new answer (a resubmission answered with the earlier
    one is not counted again): submitted, and adjudicated or denied when it says so."""
    CLAIMS.labels("submitted").inc()
    outcome = claim_outcome(response)
    if outcome in ADJUDICATED:
        CLAIMS.labels("adjudicated").inc()
    elif outcome is ClaimOutcome.ERROR:
        CLAIMS.labels("denied").inc()


def bill_issued() -> None:
    """``Invoice/$generate-bill`` committed a new bill (not one issued before)."""
    BILLS_ISSUED.inc()


def login(success: bool) -> None:
    LOGINS.labels("success" if success else "failure").inc()
