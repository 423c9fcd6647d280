"""Journey topics: one rule per topic, comparing the version before with the one after."""

from __future__ import annotations

from fhir_server.events.topics import JOURNEY_TOPICS, TOPIC_TYPES, journey_topics


def _appointment(status: str, start: str = "2026-12-07T09:00:00Z") -> dict[str, object]:
    return {"resourceType": "Appointment", "status": status, "start": start,
            "end": start.replace("09:", "09:3")}


def test_the_journey_topics_are_the_names_other_tools_rely_on() -> None:
    assert set(JOURNEY_TOPICS) == {
        "appointment-booked", "appointment-rescheduled", "appointment-cancelled",
        "encounter-finished", "invoice-issued", "claim-response", "payment-posted",
        "eligibility-response"}
    assert TOPIC_TYPES["payment-posted"] == "PaymentReconciliation"


def test_an_appointment_is_booked_once_rescheduled_when_moved_cancelled_once() -> None:
    assert journey_topics("Appointment", None, _appointment("booked")) == (
        "appointment-booked",)
    assert journey_topics("Appointment", _appointment("proposed"), _appointment("booked")) == (
        "appointment-booked",)
    # Booked and still booked at the same time: nothing happened to the journey.
    assert journey_topics("Appointment", _appointment("booked"), _appointment("booked")) == ()
    moved = _appointment("booked", start="2026-12-08T09:00:00Z")
    assert journey_topics("Appointment", _appointment("booked"), moved) == (
        "appointment-rescheduled",)
    assert journey_topics("Appointment", _appointment("booked"), _appointment("cancelled")) == (
        "appointment-cancelled",)
    assert journey_topics("Appointment", _appointment("cancelled"),
                          _appointment("cancelled")) == ()
    assert journey_topics("Appointment", _appointment("booked"), None) == ()  # a deletion


def test_visits_bills_answers_and_payments() -> None:
    assert journey_topics("Encounter", {"status": "in-progress"}, {"status": "finished"}) == (
        "encounter-finished",)
    assert journey_topics("Encounter", {"status": "finished"}, {"status": "finished"}) == ()
    assert journey_topics("Invoice", None, {"status": "draft"}) == ()
    assert journey_topics("Invoice", {"status": "draft"}, {"status": "issued"}) == (
        "invoice-issued",)
    assert journey_topics("ClaimResponse", None, {"outcome": "queued"}) == ("claim-response",)
    assert journey_topics("ClaimResponse", {"outcome": "queued"}, {"outcome": "complete"}) == (
        "claim-response",)
    assert journey_topics("PaymentReconciliation", None, {"status": "active"}) == (
        "payment-posted",)
    assert journey_topics("CoverageEligibilityResponse", None, {"outcome": "complete"}) == (
        "eligibility-response",)
    assert journey_topics("Patient", None, {"active": True}) == ()
