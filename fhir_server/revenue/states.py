"""The states of the revenue cycle's resources and the changes this server makes to them.

Each resource has one enum (the R4 codes as values) and ONE transition table: for each
state (``None``: the resource is new), the states this server may move it to. Every
place where the server itself sets a status or an outcome goes through ``transition``,
which refuses a change not in the table (``TransitionRefused``, a 422 that names the
two states and nothing else). What a client writes with a plain create, update or patch
is the client's record and is not checked here: that is unchanged FHIR behaviour.

Where an Invoice's status changes (the only places):

* ``fhir_server/service/rules/appointment.py`` (``AppointmentRules._invoice``): a booking
  creates the appointment's ``draft`` Invoice (or revives a ``cancelled`` one); cancelling
  the appointment cancels a ``draft``;
* ``fhir_server/revenue/billing.py`` (``compose``): the bill is ``issued``, new or from the
  booking's ``draft``;
* ``fhir_server/revenue/balances.py`` (``post``): a payment, an adjudication or a
  remittance moves an ``issued`` Invoice to ``balanced`` when nothing is owed, and back to
  ``issued`` when something is;
* ``fhir_server/operations/charge_item_apply.py``: answers a ``draft`` Invoice it never
  stores (a new one).

Where a ClaimResponse's outcome is set: ``fhir_server/revenue/payer/claims.py`` (this
server adjudicating: ``complete`` or ``error``), ``fhir_server/adapters/payer_x12.py`` (the
clearinghouse's 999: ``queued`` or ``error``), ``fhir_server/operations/claim_submit.py``
(``_commit``: every payer's answer is checked against the one it replaces),
``fhir_server/operations/remittance_claims.py`` (an 835: ``complete``) and
``fhir_server/operations/remittance_posting.py`` (a 277CA: ``error``, or unchanged).
Claims (``revenue/billing.py``) and PaymentReconciliations (``$record-payment``, an 835's
posting) are only ever created ``active`` by this server.

Where a worklist Task's status is set: ``fhir_server/operations/worklist.py`` (a step that
failed opens or updates its Task, ``failed``; one that succeeded completes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from fhir_server.core.errors import Unprocessable
from fhir_server.terminology.systems import WORKLIST


class InvoiceStatus(StrEnum):
    """``http://hl7.org/fhir/invoice-status``."""

    DRAFT = "draft"
    ISSUED = "issued"
    BALANCED = "balanced"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


class ClaimStatus(StrEnum):
    """``http://hl7.org/fhir/fm-status`` as a Claim's status."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    DRAFT = "draft"
    ENTERED_IN_ERROR = "entered-in-error"


class ClaimOutcome(StrEnum):
    """``http://hl7.org/fhir/remittance-outcome``: a ClaimResponse's outcome."""

    QUEUED = "queued"
    COMPLETE = "complete"
    ERROR = "error"
    PARTIAL = "partial"


class PaymentReconciliationStatus(StrEnum):
    """``http://hl7.org/fhir/fm-status`` as a PaymentReconciliation's status."""

    ACTIVE = "active"
    CANCELLED = "cancelled"
    DRAFT = "draft"
    ENTERED_IN_ERROR = "entered-in-error"


class AppointmentStatus(StrEnum):
    """``http://hl7.org/fhir/appointmentstatus``."""

    PROPOSED = "proposed"
    PENDING = "pending"
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"
    ENTERED_IN_ERROR = "entered-in-error"
    CHECKED_IN = "checked-in"
    WAITLIST = "waitlist"


class TaskStatus(StrEnum):
    """``http://hl7.org/fhir/task-status``."""

    DRAFT = "draft"
    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    READY = "ready"
    CANCELLED = "cancelled"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    FAILED = "failed"
    COMPLETED = "completed"
    ENTERED_IN_ERROR = "entered-in-error"


I = InvoiceStatus  # noqa: E741 - the tables below read better short
INVOICE: Mapping[InvoiceStatus | None, frozenset[InvoiceStatus]] = {
    None: frozenset({I.DRAFT, I.ISSUED}),  # a booking's draft; a bill without one
    I.DRAFT: frozenset({I.DRAFT, I.ISSUED, I.CANCELLED}),  # re-booked; billed; cancelled
    I.ISSUED: frozenset({I.ISSUED, I.BALANCED}),  # posting: still owed, or settled
    I.BALANCED: frozenset({I.ISSUED, I.BALANCED}),  # a reversal owes again; more credit
    I.CANCELLED: frozenset({I.DRAFT}),  # the appointment is booked again
    I.ENTERED_IN_ERROR: frozenset(),
}
del I

O = ClaimOutcome  # noqa: E741
# A ClaimResponse's outcome: this server as payer answers complete or error at once; a
# payer reached over X12 answers queued, then a 277CA (error, or still queued) and an 835
# (complete). A changed Claim sent again starts over (queued), and a payer's later answer
# replaces an earlier one, whatever it was.
CLAIM_RESPONSE: Mapping[ClaimOutcome | None, frozenset[ClaimOutcome]] = {
    None: frozenset(O),
    O.QUEUED: frozenset(O),
    O.ERROR: frozenset(O),
    O.PARTIAL: frozenset(O),
    O.COMPLETE: frozenset({O.COMPLETE, O.QUEUED, O.PARTIAL, O.ERROR}),
}
del O

C = ClaimStatus
CLAIM: Mapping[ClaimStatus | None, frozenset[ClaimStatus]] = {
    None: frozenset({C.ACTIVE}),  # a bill's Claim
    C.DRAFT: frozenset({C.ACTIVE, C.ENTERED_IN_ERROR}),
    C.ACTIVE: frozenset({C.CANCELLED, C.ENTERED_IN_ERROR}),
    C.CANCELLED: frozenset(),
    C.ENTERED_IN_ERROR: frozenset(),
}
del C

P = PaymentReconciliationStatus
PAYMENT_RECONCILIATION: Mapping[PaymentReconciliationStatus | None,
                                frozenset[PaymentReconciliationStatus]] = {
    None: frozenset({P.ACTIVE}),  # a recorded payment; a posted 835
    P.DRAFT: frozenset({P.ACTIVE, P.ENTERED_IN_ERROR}),
    P.ACTIVE: frozenset({P.CANCELLED, P.ENTERED_IN_ERROR}),
    P.CANCELLED: frozenset(),
    P.ENTERED_IN_ERROR: frozenset(),
}
del P

A = AppointmentStatus
# Booking-relevant: an appointment holds its practitioners' and locations' time (and has a
# draft Invoice) while BOOKING; ENDING ones release both. A ``noshow`` keeps its bill.
BOOKING = frozenset({A.BOOKED, A.ARRIVED, A.CHECKED_IN})
ENDING = frozenset({A.CANCELLED, A.ENTERED_IN_ERROR})
# The R4 workflow (appointmentstatus' definitions). Appointments are the clinic's record,
# written by clients and HL7 v2 SIU messages; this table documents the way, it is not
# imposed on their writes.
APPOINTMENT: Mapping[AppointmentStatus | None, frozenset[AppointmentStatus]] = {
    None: frozenset({A.PROPOSED, A.PENDING, A.BOOKED, A.WAITLIST, A.ARRIVED, A.CHECKED_IN}),
    A.PROPOSED: frozenset({A.PENDING, A.BOOKED, A.WAITLIST, A.CANCELLED,
                           A.ENTERED_IN_ERROR}),
    A.PENDING: frozenset({A.BOOKED, A.WAITLIST, A.CANCELLED, A.ENTERED_IN_ERROR}),
    A.WAITLIST: frozenset({A.PENDING, A.BOOKED, A.CANCELLED, A.ENTERED_IN_ERROR}),
    A.BOOKED: frozenset({A.ARRIVED, A.CHECKED_IN, A.FULFILLED, A.NOSHOW, A.CANCELLED,
                         A.ENTERED_IN_ERROR}),
    A.ARRIVED: frozenset({A.CHECKED_IN, A.FULFILLED, A.CANCELLED, A.ENTERED_IN_ERROR}),
    A.CHECKED_IN: frozenset({A.FULFILLED, A.CANCELLED, A.ENTERED_IN_ERROR}),
    A.NOSHOW: frozenset({A.BOOKED, A.ENTERED_IN_ERROR}),
    A.FULFILLED: frozenset({A.ENTERED_IN_ERROR}),
    A.CANCELLED: frozenset({A.BOOKED, A.ENTERED_IN_ERROR}),
    A.ENTERED_IN_ERROR: frozenset(),
}
del A

T = TaskStatus
# A worklist Task is open until the step is done (or someone closed it). The server opens
# one failed, fails it again with the new reason, or completes it; whoever works the list
# may set an open one to another open status (requested: run the step again).
OPEN_TASKS = frozenset({T.DRAFT, T.REQUESTED, T.RECEIVED, T.ACCEPTED, T.READY, T.IN_PROGRESS,
                        T.ON_HOLD, T.FAILED})
TASK: Mapping[TaskStatus | None, frozenset[TaskStatus]] = {
    None: frozenset({T.FAILED}),
    **{s: frozenset({T.FAILED, T.COMPLETED}) for s in OPEN_TASKS},
    T.COMPLETED: frozenset(), T.CANCELLED: frozenset(), T.REJECTED: frozenset(),
    T.ENTERED_IN_ERROR: frozenset(),
}
del T

TABLES: Mapping[str, Mapping[Any, frozenset[Any]]] = {
    "Invoice": INVOICE, "Claim": CLAIM, "ClaimResponse": CLAIM_RESPONSE,
    "PaymentReconciliation": PAYMENT_RECONCILIATION, "Appointment": APPOINTMENT, "Task": TASK}

State = TypeVar("State", bound=StrEnum)


class TransitionRefused(Unprocessable):
    """A state change not in its resource's table. It names the two codes (never content)."""

    def __init__(self, resource_type: str, was: Any, to: str) -> None:
        stored = "(new)" if was is None else str(was)[:32]
        super().__init__(f"{resource_type} cannot go from {stored} to {to}",
                         code="business-rule")


def state_of(kind: type[State], value: Any) -> State | None:
    """The state a stored code stands for (None: absent, or not a code of ``kind``)."""
    try:
        return kind(value) if isinstance(value, str) else None
    except ValueError:
        return None


def allowed(resource_type: str, was: StrEnum | None, to: StrEnum) -> bool:
    return to in TABLES[resource_type].get(was, frozenset())


def transition(resource_type: str, was: Any, to: State) -> str:
    """The code to write when this server moves a resource from ``was`` (its stored code,
    or None when new) to ``to``; ``TransitionRefused`` when the table does not allow it."""
    table = TABLES[resource_type]
    kind = type(to)
    current = None if was is None else state_of(kind, was)
    if (was is not None and current is None) or to not in table.get(current, frozenset()):
        raise TransitionRefused(resource_type, was, to.value)
    return to.value


def invoice_status(resource: Mapping[str, Any] | None) -> InvoiceStatus | None:
    return state_of(InvoiceStatus, (resource or {}).get("status"))


def task_status(resource: Mapping[str, Any] | None) -> TaskStatus | None:
    return state_of(TaskStatus, (resource or {}).get("status"))


def worklist_codes(task: Mapping[str, Any] | None) -> list[str]:
    """The worklist steps a Task names: its ``code`` codings under ``WORKLIST``."""
    codings = ((task or {}).get("code") or {}).get("coding") or []
    return [str(c.get("code")) for c in codings
            if isinstance(c, dict) and c.get("system") == WORKLIST]


def claim_outcome(resource: Mapping[str, Any] | None) -> ClaimOutcome | None:
    return state_of(ClaimOutcome, (resource or {}).get("outcome"))


# Invoices that take payments and postings: the bill was issued.
OPEN_INVOICES = frozenset({InvoiceStatus.ISSUED, InvoiceStatus.BALANCED})
# ClaimResponses that settle a claim (adjudicated in full or in part).
ADJUDICATED = frozenset({ClaimOutcome.COMPLETE, ClaimOutcome.PARTIAL})
