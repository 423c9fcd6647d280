"""Small builders of the notifications tests' resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

EMAIL, MOBILE = "peter.chalmers@example.org", "+1 (555) 123-4567"
MOBILE_SENT = "+15551234567"  # MOBILE as the provider is sent it: digits and +
REASON = "Chest pain follow-up"  # health data: never in a message


def patient(*, language: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "birthDate": "1974-12-25",
        "telecom": [{"system": "email", "value": EMAIL, "rank": 1},
                    {"system": "phone", "use": "home", "value": "+1 555 000 9999"},
                    {"system": "phone", "use": "mobile", "value": MOBILE}], **extra}
    if language:
        body["communication"] = [{"language": {"coding": [{
            "system": "urn:ietf:bcp:47", "code": language}]}, "preferred": True}]
    return body


def starts_in(delta: timedelta) -> str:
    moment = (datetime.now(UTC) + delta).replace(second=0, microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def appointment(patient_id: str, start: str, *, minutes: int = 30,
                status: str = "booked") -> dict[str, Any]:
    end = (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=minutes))
    return {"resourceType": "Appointment", "status": status, "start": start,
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reasonCode": [{"text": REASON}],
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"},
                             "status": "accepted"}]}


def clinic_time(start: str, timezone: str) -> str:
    """The start as the clinic's clock shows it (date and minutes)."""
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def issued_invoice(patient_id: str, *, gross: str, patient_share: str | None,
                   currency: str = "USD") -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Invoice", "status": "issued",
        "subject": {"reference": f"Patient/{patient_id}"},
        "totalGross": {"value": float(gross), "currency": currency}}
    if patient_share is not None:
        body["totalPriceComponent"] = [{
            "type": "informational",
            "code": {"coding": [{"system": "https://fhir-rcm-server.org/CodeSystem/invoice-share",
                                 "code": "patient"}]},
            "amount": {"value": float(patient_share), "currency": currency}}]
    return body


def opt_out(patient_id: str, channels: tuple[str, ...] = ()) -> dict[str, Any]:
    provision: dict[str, Any] = {
        "type": "deny",
        "action": [{"coding": [{"system": "https://fhir-rcm-server.org/CodeSystem/consent-action",
                                "code": "notify"}]}]}
    if channels:
        provision["code"] = [{"coding": [{"system": "http://hl7.org/fhir/contact-point-system",
                                          "code": c}]} for c in channels]
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient_id}"},
            "policyRule": {"text": "No notifications"}, "provision": provision}
