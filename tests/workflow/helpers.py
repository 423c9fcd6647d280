"""Builders for the revenue-cycle tests: the resources a clinic and a payer hold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson

CURRENCY = "USD"
SERVICE_SYSTEM = "urn:example:clinic-services"
# The example price list: Doctor Consultation 400, Blood Test 250.
PRICES = {"OPD001": ("Doctor Consultation", Decimal("400")),
          "LAB025": ("Blood Test", Decimal("250"))}
PAYER_ID_SYSTEM = "urn:example:payer-id"
MEMBER_SYSTEM = "urn:example:member-id"


def body(value: Any) -> bytes:
    """JSON with Decimals written as exact numbers."""
    return orjson.dumps(value, default=_number)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(type(value).__name__)


HEADERS = {"Content-Type": "application/fhir+json"}


async def post(http: httpx.AsyncClient, url: str, value: Any,
               headers: dict[str, str] | None = None) -> httpx.Response:
    return await http.post(url, content=body(value), headers={**HEADERS, **(headers or {})})


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await post(http, resource["resourceType"], resource)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


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


def by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        out.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return out


def adjudication(item: dict[str, Any], code: str) -> Decimal:
    for a in item["adjudication"]:
        if a["category"]["coding"][0]["code"] == code:
            return Decimal(str(a["amount"]["value"]))
    raise KeyError(code)


def share(invoice: dict[str, Any], code: str) -> Decimal:
    for c in invoice.get("totalPriceComponent", []):
        if c["code"]["coding"][0]["code"] == code:
            return Decimal(str(c["amount"]["value"]))
    raise KeyError(code)
