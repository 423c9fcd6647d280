"""FHIR JSON's types (R4 json.html): booleans are true/false, integers and decimals are
numbers, every other primitive (dates and times too) is a string, and no element is null
(null only keeps a primitive array aligned with its ``_element`` twin). Content that the
models would coerce ("true", "5", a number as a date) is refused, naming the element, so
what is stored (the client's own JSON) is FHIR JSON."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

QTY = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}

WRONG = [
    ("Patient", {"resourceType": "Patient", "active": "true"}, "Patient.active", "boolean"),
    ("Patient", {"resourceType": "Patient", "active": 1}, "Patient.active", "boolean"),
    ("Patient", {"resourceType": "Patient", "multipleBirthInteger": "2"},
     "Patient.multipleBirthInteger", "integer"),
    ("Patient", {"resourceType": "Patient", "multipleBirthInteger": 2.5},
     "Patient.multipleBirthInteger", "integer"),
    ("Observation", {**QTY, "valueQuantity": {"value": "72.5"}},
     "Observation.valueQuantity.value", "decimal"),
    ("Observation", {**QTY, "valueQuantity": {"value": True}},
     "Observation.valueQuantity.value", "decimal"),
    ("Schedule", {"resourceType": "Schedule", "actor": [{"reference": "Practitioner/1"}],
                  "planningHorizon": {"end": 1700000000}}, "Schedule.planningHorizon.end",
     "dateTime"),
    ("Patient", {"resourceType": "Patient", "birthDate": 19741225}, "Patient.birthDate", "date"),
    ("Patient", {"resourceType": "Patient", "name": [{"given": ["Ann", "Lee"]}],
                 "contact": [{"name": {"family": "Ng"}, "gender": "female"},
                             {"name": {"family": "Ng"}, "_gender": {"id": 5}}]},
     "Patient.contact[1]._gender.id", "string"),
]


@pytest.mark.parametrize(("type_", "resource", "where", "kind"), WRONG)
async def test_a_primitive_of_the_wrong_json_type_is_refused(
        client: httpx.AsyncClient, type_: str, resource: dict[str, Any], where: str,
        kind: str) -> None:
    resp = await client.post(type_, json=resource)
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["expression"] == [where], issue
    assert issue["code"] == "value", issue
    if kind in ("boolean", "integer") and isinstance(resource.get(where.split(".")[-1]), str):
        assert issue["diagnostics"] == (  # taken by the model, refused for its JSON type
            f"A FHIR {kind} is {'true or false' if kind == 'boolean' else 'a whole number'}"
            " in JSON"), issue


@pytest.mark.parametrize(("resource", "where"), [
    ({"resourceType": "Patient", "gender": None}, "Patient.gender"),
    ({"resourceType": "Patient", "name": [{"family": "Ng", "period": {"end": None}}]},
     "Patient.name[0].period.end"),
])
async def test_null_is_refused(client: httpx.AsyncClient, resource: dict[str, Any],
                               where: str) -> None:
    resp = await client.post("Patient", json=resource)
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == [where]


async def test_the_right_json_types_and_aligned_nulls_are_stored_as_sent(
        client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "active": False, "multipleBirthInteger": 2,
               "birthDate": "1974-12-25",
               "name": [{"given": ["Ann", None], "_given": [None, {"extension": [
                   {"url": "http://example.org/nick", "valueString": "Lee"}]}]}]}
    made = await client.post("Patient", json=patient)
    assert made.status_code == 201, made.text
    stored = (await client.get(f"Patient/{made.json()['id']}")).json()
    for key in ("active", "multipleBirthInteger", "birthDate", "name"):
        assert stored[key] == patient[key]
    made = await client.post("Observation", content=(
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"valueQuantity":{"value":72.50,"unit":"kg"}}'),
        headers={"Content-Type": "application/fhir+json"})
    assert made.status_code == 201, made.text
    assert b'"value":72.50' in (await client.get(f"Observation/{made.json()['id']}")).content
