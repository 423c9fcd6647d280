"""The transition tables: what this server may do to a revenue resource's state."""

from __future__ import annotations

import pytest

from fhir_server.core.errors import FhirError
from fhir_server.revenue import states
from fhir_server.revenue.states import (
    AppointmentStatus,
    ClaimOutcome,
    ClaimStatus,
    InvoiceStatus,
    PaymentReconciliationStatus,
    TransitionRefused,
    transition,
)

KINDS = {"Invoice": InvoiceStatus, "Claim": ClaimStatus, "ClaimResponse": ClaimOutcome,
         "PaymentReconciliation": PaymentReconciliationStatus, "Appointment": AppointmentStatus}


@pytest.mark.parametrize("resource_type", sorted(KINDS))
def test_every_state_has_a_row_and_every_target_is_a_state(resource_type: str) -> None:
    kind, table = KINDS[resource_type], states.TABLES[resource_type]
    assert set(table) == {None, *kind}
    for targets in table.values():
        assert targets <= set(kind)


@pytest.mark.parametrize("resource_type", sorted(KINDS))
def test_transition_allows_exactly_the_table(resource_type: str) -> None:
    kind, table = KINDS[resource_type], states.TABLES[resource_type]
    for was in (None, *kind):
        for to in kind:
            stored = None if was is None else was.value
            if to in table[was]:
                assert transition(resource_type, stored, to) == to.value
                assert type(transition(resource_type, stored, to)) is str  # stored as JSON
            else:
                with pytest.raises(TransitionRefused):
                    transition(resource_type, stored, to)


def test_the_invoice_lifecycle_the_server_drives() -> None:
    booked = transition("Invoice", None, InvoiceStatus.DRAFT)
    billed = transition("Invoice", booked, InvoiceStatus.ISSUED)
    settled = transition("Invoice", billed, InvoiceStatus.BALANCED)
    assert transition("Invoice", settled, InvoiceStatus.ISSUED) == "issued"  # a reversal
    assert transition("Invoice", booked, InvoiceStatus.CANCELLED) == "cancelled"
    assert transition("Invoice", "cancelled", InvoiceStatus.DRAFT) == "draft"  # re-booked


@pytest.mark.parametrize(("was", "to"), [
    ("issued", InvoiceStatus.DRAFT), ("balanced", InvoiceStatus.CANCELLED),
    ("cancelled", InvoiceStatus.ISSUED), ("entered-in-error", InvoiceStatus.ISSUED),
    (None, InvoiceStatus.BALANCED)])
def test_an_invoice_never_goes_back_or_skips_its_bill(was: str | None,
                                                      to: InvoiceStatus) -> None:
    with pytest.raises(TransitionRefused) as refused:
        transition("Invoice", was, to)
    error = refused.value
    assert isinstance(error, FhirError) and 400 <= error.status < 500  # never a 500
    assert error.code == "business-rule"
    assert error.diagnostics == f"Invoice cannot go from {was or '(new)'} to {to.value}"


def test_a_code_that_is_no_state_is_refused() -> None:
    with pytest.raises(TransitionRefused):
        transition("Invoice", "paid", InvoiceStatus.BALANCED)
    assert states.state_of(InvoiceStatus, "paid") is None
    assert states.state_of(InvoiceStatus, None) is None
    assert states.state_of(InvoiceStatus, 3) is None


def test_a_claim_is_created_active_and_ends_for_good() -> None:
    assert transition("Claim", None, ClaimStatus.ACTIVE) == "active"
    with pytest.raises(TransitionRefused):
        transition("Claim", None, ClaimStatus.CANCELLED)
    with pytest.raises(TransitionRefused):
        transition("Claim", "cancelled", ClaimStatus.ACTIVE)


def test_a_payer_can_answer_complete_first_or_after_any_earlier_answer() -> None:
    # Every outcome can be a payer's first answer or replace an earlier one.
    for was in (None, *ClaimOutcome):
        assert transition("ClaimResponse", was, ClaimOutcome.COMPLETE) == "complete"
    assert states.claim_outcome({"outcome": "queued"}) is ClaimOutcome.QUEUED
    assert states.claim_outcome(None) is None


def test_booking_and_ending_appointment_states() -> None:
    assert {AppointmentStatus(c) for c in ("booked", "arrived", "checked-in")} == states.BOOKING
    assert {AppointmentStatus(c) for c in ("cancelled", "entered-in-error")} == states.ENDING
    assert not states.BOOKING & states.ENDING
    assert AppointmentStatus.NOSHOW not in states.ENDING  # a no-show keeps its bill
    for status in states.BOOKING:
        assert states.APPOINTMENT[status] & states.ENDING  # a booking can always be ended


def test_open_invoices_take_postings() -> None:
    for status in states.OPEN_INVOICES:
        assert states.allowed("Invoice", status, InvoiceStatus.ISSUED)
        assert states.allowed("Invoice", status, InvoiceStatus.BALANCED)
    assert states.invoice_status({"status": "issued"}) is InvoiceStatus.ISSUED
