"""A string element longer than FHIR_MAX_STRING_BYTES (UTF-8) answers 400 naming the element,
on every way a JSON body comes in; base64Binary elements are bounded by the body limit only."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from fhir_server.core.config import Settings
from tests.factories import patient

LIMIT = Settings.model_fields["fhir_max_string_bytes"].default
FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def named(text: str) -> dict[str, Any]:
    return {**patient(family="Strings"), "name": [{"family": "Strings", "text": text}]}


def assert_too_long(r: httpx.Response, where: str) -> None:
    assert r.status_code == 400, r.text[:500]
    issue = r.json()["issue"][0]
    assert issue["code"] == "too-long"
    assert issue["expression"] == [where]
    assert f"longer than {LIMIT} bytes" in issue["diagnostics"]
    assert "FHIR_MAX_STRING_BYTES" in issue["diagnostics"]


async def stored(client: httpx.AsyncClient) -> int:
    total: int = (await client.get("Patient", params={"family": "Strings",
                                                      "_summary": "count"})).json()["total"]
    return total


def test_the_default_is_fhirs_one_megabyte() -> None:
    assert LIMIT == 1024 * 1024


async def test_a_string_at_the_limit_is_kept_one_byte_more_is_refused(
        client: httpx.AsyncClient) -> None:
    at_limit = "a" * LIMIT
    r = await client.post("Patient", json=named(at_limit))
    assert r.status_code == 201, r.text[:500]
    assert r.json()["name"][0]["text"] == at_limit
    assert_too_long(await client.post("Patient", json=named(at_limit + "a")),
                    "Patient.name[0].text")
    assert await stored(client) == 1


async def test_the_limit_counts_utf8_bytes_not_characters(client: httpx.AsyncClient) -> None:
    two_bytes = "é"
    assert len(two_bytes.encode()) == 2
    fits = two_bytes * (LIMIT // 2)
    r = await client.post("Patient", json=named(fits))
    assert r.status_code == 201, r.text[:500]
    over = fits + two_bytes  # fewer characters than the limit, more bytes
    assert len(over) < LIMIT < len(over.encode())
    assert_too_long(await client.post("Patient", json=named(over)), "Patient.name[0].text")
    assert await stored(client) == 1


async def test_bundles_patches_and_parameters_name_the_element(
        client: httpx.AsyncClient) -> None:
    long = "b" * (LIMIT + 1)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(family="Strings"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": named(long), "request": {"method": "POST", "url": "Patient"}}]}
    assert_too_long(await client.post("", json=bundle), "Bundle.entry[1].resource.name[0].text")
    created = await client.post("Patient", json=patient(family="Strings"))
    assert created.status_code == 201
    pid = created.json()["id"]
    patch = [{"op": "add", "path": "/name/0/text", "value": long}]
    # a JSON Patch is not a resource: the limit holds, with no FHIRPath to name
    r = await client.patch(f"Patient/{pid}", json=patch, headers=JSON_PATCH)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "too-long", r.text[:500]
    fhirpath_patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient.name[0]"},
        {"name": "name", "valueString": "text"}, {"name": "value", "valueString": long}]}]}
    assert_too_long(await client.patch(f"Patient/{pid}", json=fhirpath_patch, headers=FHIR_JSON),
                    "Parameters.parameter[0].part[3].valueString")
    assert (await client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "1"
    assert await stored(client) == 1


async def test_base64_data_is_bounded_by_the_body_limit_only(client: httpx.AsyncClient) -> None:
    document = bytes(range(256)) * (LIMIT // 256 + 1)  # base64 of it is over the string limit
    data = base64.b64encode(document).decode()
    assert len(data) > LIMIT
    binary = await client.post("Binary", json={"resourceType": "Binary",
                                               "contentType": "application/pdf", "data": data})
    assert binary.status_code == 201, binary.text[:500]
    reference = await client.post("DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "data": data}}]})
    assert reference.status_code == 201, reference.text[:500]
    read = (await client.get(f"DocumentReference/{reference.json()['id']}")).json()
    assert base64.b64decode(read["content"][0]["attachment"]["data"]) == document
    # the same length in a string element is refused
    assert_too_long(await client.post("DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current", "description": data,
        "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:x"}}]}),
        "DocumentReference.description")


async def test_a_long_string_with_a_lone_surrogate_is_a_400(client: httpx.AsyncClient) -> None:
    """A lone surrogate (``\\ud800``: valid JSON, not Unicode) in a string long enough to be
    measured in bytes is refused by the validation, naming the element, as a short one is."""
    for length in (5, LIMIT // 4 + 10):
        body = '{"resourceType":"Patient","name":[{"text":"' + "a" * length + '\\ud800"}]}'
        r = await client.post("Patient", content=body.encode(), headers=FHIR_JSON)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["issue"][0]["expression"] == ["Patient.name[0].text"]
