"""Bad input of every kind answers 4xx with an OperationOutcome saying what and where."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def issue(resp: httpx.Response) -> dict:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"resourceType": "Patient",', 400, "structure"),
        (b"[1, 2]", 400, "structure"),
        (b'"Patient"', 400, "structure"),
        (b"", 400, "structure"),
        (b'{"resourceType":"Patient","birthDate":NaN}', 400, "structure"),
        (b"\xff\xfe", 400, "structure"),
    ],
)
async def test_malformed_bodies(client: httpx.AsyncClient, body: bytes, status: int,
                                code: str) -> None:
    resp = await client.post("Patient", content=body, headers=FHIR_JSON)
    assert resp.status_code == status
    assert issue(resp)["code"] == code


@pytest.mark.parametrize(("number", "said"), [
    ("NaN", "NaN is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("9" * 5000, "a number has more digits than this server reads"),
])
async def test_numbers_json_does_not_have_are_named(client: httpx.AsyncClient, number: str,
                                                   said: str) -> None:
    body = ('{"resourceType":"Observation","status":"final","code":{"text":"x"},'
            f'"valueInteger":{number}}}').encode()
    resp = await client.post("Observation", content=body, headers=FHIR_JSON)
    assert resp.status_code == 400
    assert issue(resp)["code"] == "structure"
    assert issue(resp)["diagnostics"] == f"The request body is not valid JSON: {said}"


@pytest.mark.parametrize(("body", "said"), [
    ('{"resourceType":"Patient","gender":"male","gender":"female"}', '"gender" appears twice'),
    ('{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}', '"family" appears twice'),
    ('{"resourceType":"Patient","a b":1,"a b":2}', "a key appears twice"),  # not echoed
])
async def test_duplicate_keys_are_refused(client: httpx.AsyncClient, body: str,
                                          said: str) -> None:
    resp = await client.post("Patient", content=body.encode(), headers=FHIR_JSON)
    assert resp.status_code == 400
    assert issue(resp)["code"] == "structure"
    assert issue(resp)["diagnostics"] == (
        f"The request body is not valid FHIR JSON: {said} in one object")
    assert (await client.get("Patient")).json()["total"] == 0  # nothing was written


async def test_wrong_resource_type(client: httpx.AsyncClient) -> None:
    resp = await client.post("Patient", json={"resourceType": "Observation", "status": "final",
                                              "code": {"text": "x"}})
    assert resp.status_code == 400
    assert issue(resp)["expression"] == ["resourceType"]
    missing = await client.post("Patient", json={"name": [{"family": "X"}]})
    assert missing.status_code == 400 and issue(missing)["expression"] == ["resourceType"]


async def test_unknown_type(client: httpx.AsyncClient) -> None:
    resp = await client.post("Spaceship", json={"resourceType": "Spaceship"})
    assert resp.status_code == 404
    assert "Spaceship" in issue(resp)["diagnostics"]
    assert (await client.get("Spaceship/1")).status_code == 404


async def test_unknown_element_is_located(client: httpx.AsyncClient) -> None:
    resp = await client.post("Patient", json={**patient(), "contact": [{"nickname": "x"}]})
    assert resp.status_code == 400
    assert issue(resp)["expression"] == ["Patient.contact[0].nickname"]


async def test_invalid_value_is_located(client: httpx.AsyncClient) -> None:
    resp = await client.post("Patient", json={**patient(), "birthDate": "25/12/1974"})
    assert resp.status_code == 400
    assert issue(resp)["expression"] == ["Patient.birthDate"]
    assert "25/12/1974" not in resp.text  # no resource content in errors


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Invoice", "status": "paid"}, "Invoice.status"),
        ({**patient(), "gender": "robot"}, "Patient.gender"),
        ({"resourceType": "Appointment", "status": "confirmed",
          "participant": [{"status": "accepted", "actor": {"reference": "Patient/1"}}]},
         "Appointment.status"),
        ({"resourceType": "Encounter", "status": "done",
          "class": {"code": "AMB"}}, "Encounter.status"),
        ({"resourceType": "Claim", "status": "active", "use": "bill",
          "type": {"text": "x"}, "patient": {"reference": "Patient/1"},
          "created": "2024-01-01", "provider": {"reference": "Organization/1"},
          "priority": {"text": "normal"}, "insurance": [{"sequence": 1, "focal": True,
                                                         "coverage": {"reference": "Coverage/1"}}]},
         "Claim.use"),
        ({"resourceType": "Coverage", "status": "valid",
          "beneficiary": {"reference": "Patient/1"}, "payor": [{"reference": "Organization/1"}]},
         "Coverage.status"),
        ({**patient(), "telecom": [{"system": "pager2", "value": "1"}]}, "Patient.telecom[0].system"),
    ],
)
async def test_required_bindings(client: httpx.AsyncClient, resource: dict,
                                 expression: str) -> None:
    resp = await client.post(resource["resourceType"], json=resource)
    assert resp.status_code == 400, resp.text
    found = issue(resp)
    assert found["code"] == "code-invalid"
    assert found["expression"] == [expression]


async def test_id_rules(client: httpx.AsyncClient) -> None:
    mismatch = await client.put("Patient/abc", json=patient(id_="xyz"))
    assert mismatch.status_code == 400 and issue(mismatch)["expression"] == ["Patient.id"]
    no_id = await client.put("Patient/abc", json=patient())
    assert no_id.status_code == 400
    bad = await client.put("Patient/has_underscore", json=patient(id_="has_underscore"))
    assert bad.status_code == 400
    assert (await client.get("Patient/" + "x" * 65)).status_code == 400


async def test_xml_is_refused(client: httpx.AsyncClient) -> None:
    xml = await client.post("Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                            headers={"Content-Type": "application/fhir+xml"})
    assert xml.status_code == 415
    accept = await client.get("metadata", headers={"Accept": "application/fhir+xml"})
    assert accept.status_code == 406
    fmt = await client.get("metadata", params={"_format": "xml"})
    assert fmt.status_code == 406 and issue(fmt)["expression"] == ["_format"]


async def test_bad_search_and_paging_parameters(client: httpx.AsyncClient) -> None:
    count = await client.get("Patient", params={"_count": "many"})
    assert count.status_code == 400 and issue(count)["expression"] == ["_count"]
    unknown = await client.get("Patient", params={"shoe-size": "42"})
    assert unknown.status_code == 400 and issue(unknown)["expression"] == ["shoe-size"]
    since = await client.get("Patient/_history", params={"_since": "yesterday"})
    assert since.status_code == 400 and issue(since)["expression"] == ["_since"]
    etag = await client.put("Patient/p1", json=patient(id_="p1"), headers={"If-Match": "3"})
    assert etag.status_code == 400


async def test_unstorable_content(client: httpx.AsyncClient) -> None:
    resp = await client.post("Patient", json={**patient(), "name": [{"family": "A\u0000B"}]})
    assert resp.status_code == 400
    assert issue(resp)["expression"] == ["Patient.name[0].family"]


async def test_nothing_written_on_failure(client: httpx.AsyncClient) -> None:
    await client.post("Patient", json={**patient(), "gender": "robot"})
    history = (await client.get("Patient/_history")).json()
    assert history["total"] == 0
    system = (await client.get("_history", params={"_count": 1000})).json()
    assert not [e for e in system.get("entry", [])
                if e.get("request", {}).get("url", "").startswith("Patient")]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    resp = await client.get("Patient/1/_history/1/extra")
    assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"
    method = await client.post("Patient/1", json={})
    assert method.status_code == 405 and method.json()["resourceType"] == "OperationOutcome"


async def test_get_of_an_operation_only_post_invokes(client: httpx.AsyncClient) -> None:
    """GET of an operation that changes data is a 405 naming POST; GET of an operation the
    type does not have is a 404 naming it (not read as an id or a compartment's type)."""
    from fhir_server.operations.registry import OPERATIONS

    posted_only = [op for op in OPERATIONS if op.affects_state]
    assert posted_only
    for op in posted_only:
        type_ = op.resource[0]
        url = f"{type_}/${op.code}" if op.type_level else f"{type_}/some-id/${op.code}"
        resp = await client.get(url)
        assert resp.status_code == 405, (url, resp.text)
        assert resp.headers["allow"] == "POST"
        assert f"${op.code}" in issue(resp)["diagnostics"]
    for url, level in (("Patient/$no-such-op", "type-level"),
                       ("Patient/some-id/$no-such-op", "instance")):
        resp = await client.get(url)
        assert resp.status_code == 404, (url, resp.text)
        assert issue(resp)["diagnostics"] == (
            f"Patient has no {level} operation '$no-such-op' on this server")



@pytest.mark.parametrize("value", [5, 1.5, True, {"a": "b"}, ["http://x.example"]])
@pytest.mark.parametrize(("type_", "resource", "where"), [
    ("Endpoint", lambda v: {"resourceType": "Endpoint", "status": "active",
                            "connectionType": {"code": "hl7-fhir-rest"},
                            "payloadType": [{"text": "any"}], "address": v},
     "Endpoint.address"),
    ("Patient", lambda v: {"resourceType": "Patient",
                           "extension": [{"url": "http://x.example/e", "valueUrl": v}]},
     "Patient.extension[0].valueUrl"),
    ("Subscription", lambda v: {"resourceType": "Subscription", "status": "off",
                                "reason": "r", "criteria": "Patient?",
                                "channel": {"type": "rest-hook", "endpoint": v}},
     "Subscription.channel.endpoint"),
])
async def test_a_url_element_that_is_not_a_string_is_located(
        client: httpx.AsyncClient, type_: str, resource: Any, where: str, value: Any) -> None:
    resp = await client.post(type_, json=resource(value))
    assert resp.status_code == 400, resp.text
    assert where in issue(resp)["expression"], resp.text
