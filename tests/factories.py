"""Small builders for test resources: every FHIR resource (or Parameters part) a test
builds from a few arguments is built here."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from tools.data_sets import EXAMPLES

CURRENCY = "USD"
SERVICE_SYSTEM = "urn:example:clinic-services"
# The example price list: Doctor Consultation 400, Blood Test 250.
PRICES = {"OPD001": ("Doctor Consultation", Decimal("400")),
          "LAB025": ("Blood Test", Decimal("250"))}
PAYER_ID_SYSTEM = "urn:example:payer-id"
MEMBER_SYSTEM = "urn:example:member-id"
# A tag system of the tests' own (to find what one test wrote).
TAGS = "http://test.example/tags"
AMB = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def patient(*, family: str = "Chalmers", given: str = "Peter", gender: str = "male",
            birth_date: str = "1974-12-25", identifier: tuple[str, str] | None = None,
            id_: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family,
                                                                "given": [given]}],
                           "gender": gender, "birthDate": birth_date}
    if identifier is not None:
        res["identifier"] = [{"system": identifier[0], "value": identifier[1]}]
    if id_ is not None:
        res["id"] = id_
    return res


def example(name: str) -> dict[str, Any]:
    """An official R4 example, decimals kept exact."""
    return load_json(EXAMPLES / name)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(), parse_float=Decimal)


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def charge_item_definition(code: str, *, extra: list[dict[str, Any]] | None = None
                           ) -> dict[str, Any]:
    display, price = PRICES[code]
    return {"resourceType": "ChargeItemDefinition", "url": f"urn:example:price/{code}",
            "status": "active", "date": "2026-01-01",
            "code": {"coding": [{"system": SERVICE_SYSTEM, "code": code, "display": display}]},
            "propertyGroup": [{"priceComponent": [
                {"type": "base", "amount": {"value": price, "currency": CURRENCY}},
                *(extra or [])]}]}


def payer_org(name: str, payer_id: str, endpoint: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "name": name, "active": True,
                           "identifier": [{"system": PAYER_ID_SYSTEM, "value": payer_id}],
                           "type": [{"coding": [{
                               "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                               "code": "pay"}]}]}
    if endpoint:
        org["endpoint"] = [{"reference": endpoint}]
    return org


def coverage(*, patient: str, payer: str, member_id: str, start: str = "2026-01-01",
             end: str = "2026-12-31", status: str = "active", copay: Decimal | None = None,
             deductible: Decimal | None = None, plan: str | None = None) -> dict[str, Any]:
    cov: dict[str, Any] = {
        "resourceType": "Coverage", "status": status,
        "identifier": [{"system": MEMBER_SYSTEM, "value": member_id}],
        "subscriberId": member_id, "beneficiary": {"reference": patient},
        "payor": [{"reference": payer}], "period": {"start": start, "end": end}}
    costs = []
    if copay is not None:
        costs.append({"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/coverage-copay-type",
            "code": "gpvisit"}]}, "valueMoney": {"value": copay, "currency": CURRENCY}})
    if deductible is not None:
        costs.append({"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/coverage-copay-type",
            "code": "deductible"}]}, "valueMoney": {"value": deductible, "currency": CURRENCY}})
    if costs:
        cov["costToBeneficiary"] = costs
    if plan:
        cov["class"] = [{"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
            "value": plan}]
    return cov


def service(code: str, *, quantity: Decimal | None = None, price: Decimal | None = None,
            system: str = SERVICE_SYSTEM) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "code", "valueCoding": {"system": system,
                                                                     "code": code}}]
    if quantity is not None:
        parts.append({"name": "quantity", "valueDecimal": quantity})
    if price is not None:
        parts.append({"name": "price", "valueMoney": {"value": price, "currency": CURRENCY}})
    return {"name": "service", "part": parts}


def bill_parameters(patient: str, services: list[dict[str, Any]], *,
                    encounter: str | None = None, appointment: str | None = None
                    ) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "patient", "valueReference": {"reference": patient}}]
    if encounter:
        params.append({"name": "encounter", "valueReference": {"reference": encounter}})
    if appointment:
        params.append({"name": "appointment", "valueReference": {"reference": appointment}})
    return {"resourceType": "Parameters", "parameter": [*params, *services]}


def encounter(subject: str, **extra: Any) -> dict[str, Any]:
    """A finished ambulatory Encounter of ``subject`` (a reference)."""
    return {"resourceType": "Encounter", "status": "finished", "class": AMB,
            "subject": {"reference": subject}, **extra}


def observation(subject: str | None = None, tag: str | None = None, **extra: Any) -> dict[str, Any]:
    """A final heart-rate Observation, of ``subject`` and tagged ``tag`` (in TAGS) if given."""
    res: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"text": "heart rate"}, **extra}
    if subject is not None:
        res["subject"] = {"reference": subject}
    if tag is not None:
        res["meta"] = {"tag": [{"system": TAGS, "code": tag}]}
    return res


def appointment(patient_ref: str, actors: list[str], start: str, end: str, *,
                status: str = "booked") -> dict[str, Any]:
    """An Appointment of a patient and other actors (references), all having accepted."""
    return {"resourceType": "Appointment", "status": status, "start": start, "end": end,
            "participant": [{"actor": {"reference": ref}, "status": "accepted"}
                            for ref in [patient_ref, *actors]]}
