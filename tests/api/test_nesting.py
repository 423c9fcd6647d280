"""Content nested deeper than FHIR_MAX_JSON_DEPTH answers 400 on every path that takes a body."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fhir_server.core.config import Settings
from fhir_server.core.fhirjson import dumps
from tests.factories import EXAMPLES, load_json, patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
DEFAULT_DEPTH = Settings.model_fields["fhir_max_json_depth"].default
SMALL = 12  # a limit the PATCH tests can cross with a small patch


def depth(value: Any) -> int:
    """Levels of objects and arrays (the top one is 1; a scalar is 0)."""
    deepest, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        deepest += bool(containers)
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return deepest


def nested_extension(levels: int, innermost: dict[str, Any] | None = None) -> dict[str, Any]:
    """An extension holding an extension ... ``levels`` deep."""
    ext: dict[str, Any] = innermost or {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels - 1):
        ext = {"url": "http://example.org/branch", "extension": [ext]}
    return ext


def deep_patient(levels: int = 200, **fields: Any) -> dict[str, Any]:
    return {**patient(), **fields, "extension": [nested_extension(levels)]}


def assert_too_deep(resp: httpx.Response, limit: int, where: str | None = None) -> None:
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["code"] == "structure"
    assert "nested too deeply" in issue["diagnostics"]
    assert f"at most {limit}" in issue["diagnostics"]
    if where is not None:
        assert issue["expression"][0].startswith(where), issue


def test_default_limit_is_above_every_official_example() -> None:
    deepest = max(depth(load_json(path)) for path in EXAMPLES.glob("*.json"))
    # a resource in a transaction Bundle sits 3 levels down (Bundle.entry[i].resource)
    assert deepest + 3 <= DEFAULT_DEPTH < 150


async def test_create_and_update(client: httpx.AsyncClient) -> None:
    body = deep_patient()
    assert depth(body) > DEFAULT_DEPTH
    assert_too_deep(await client.post("Patient", json=body), DEFAULT_DEPTH,
                    "Patient.extension[0].extension[0]")
    assert_too_deep(await client.put("Patient/deep", json={**body, "id": "deep"}), DEFAULT_DEPTH)
    assert (await client.get("Patient/deep")).status_code == 404
    assert (await client.get("Patient")).json()["total"] == 0


async def test_conditional_writes(client: httpx.AsyncClient) -> None:
    body = deep_patient(identifier=[{"system": "urn:x", "value": "1"}])
    created = await client.post("Patient", json=body,
                                headers={"If-None-Exist": "identifier=urn:x|1"})
    assert_too_deep(created, DEFAULT_DEPTH)
    assert_too_deep(await client.put("Patient", params={"identifier": "urn:x|1"}, json=body),
                    DEFAULT_DEPTH)
    assert (await client.get("Patient")).json()["total"] == 0


@pytest.mark.parametrize("bundle_type", ["transaction", "batch"])
async def test_bundles(client: httpx.AsyncClient, bundle_type: str) -> None:
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": deep_patient(), "request": {"method": "POST", "url": "Patient"}},
    ]}
    assert_too_deep(await client.post("", json=bundle), DEFAULT_DEPTH,
                    "Bundle.entry[1].resource.extension[0]")
    assert (await client.get("Patient")).json()["total"] == 0


async def test_a_bundle_holding_the_deepest_example_is_accepted(client: httpx.AsyncClient) -> None:
    deepest = max(EXAMPLES.glob("*.json"), key=lambda p: depth(load_json(p)))
    resource = load_json(deepest)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}]}
    resp = await client.post("", content=dumps(bundle), headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text


async def test_a_body_deeper_than_the_interpreter_stack(client: httpx.AsyncClient) -> None:
    body = b'{"resourceType":"Patient","extension":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_too_deep(await client.post("Patient", content=body, headers=FHIR_JSON), DEFAULT_DEPTH)


async def test_operation_parameters(client: httpx.AsyncClient) -> None:
    part: dict[str, Any] = {"name": "code", "valueString": "x"}
    for _ in range(100):
        part = {"name": "service", "part": [part]}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/p"}}, part]}
    assert_too_deep(await client.post("Invoice/$generate-bill", json=params), DEFAULT_DEPTH)
    claim = {"resourceType": "Claim", "extension": [nested_extension(100)]}
    assert_too_deep(await client.post("Claim/$submit", json=claim), DEFAULT_DEPTH)


# -- A lower limit, crossed by what a PATCH produces --------------------------------------

def small_limit_patient(levels: int, innermost: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**patient(), "extension": [nested_extension(levels, innermost)]}


LEAF = {"url": "http://example.org/leaf", "valueReference": {"reference": "Patient/x"}}
TOO_DEEP_LEAF = {"url": "http://example.org/leaf",
                 "valueCodeableConcept": {"coding": [{"code": "x"}]}}


@pytest.mark.parametrize("settings_overrides", [{"fhir_max_json_depth": SMALL}])
async def test_the_limit_is_a_setting_and_exact(client: httpx.AsyncClient) -> None:
    at_limit = small_limit_patient(5, LEAF)
    beyond = small_limit_patient(5, TOO_DEEP_LEAF)
    assert depth(at_limit) == SMALL and depth(beyond) == SMALL + 2
    assert (await client.post("Patient", json=at_limit)).status_code == 201
    assert_too_deep(await client.post("Patient", json=beyond), SMALL,
                    "Patient.extension[0].extension[0].extension[0].extension[0].extension[0]"
                    ".valueCodeableConcept.coding")


async def _stored_at_limit(client: httpx.AsyncClient) -> str:
    resp = await client.post("Patient", json=small_limit_patient(5, LEAF))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


INNERMOST = "/extension/0" * 5  # JSON Pointer to the innermost extension


async def _unchanged(client: httpx.AsyncClient, pid: str) -> None:
    current = (await client.get(f"Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1"
    assert depth(current) == SMALL


@pytest.mark.parametrize("settings_overrides", [{"fhir_max_json_depth": SMALL}])
async def test_json_patch_result(client: httpx.AsyncClient) -> None:
    pid = await _stored_at_limit(client)
    ops = [{"op": "add", "path": f"{INNERMOST}/extension",
            "value": [{"url": "http://example.org/more", "valueString": "y"}]}]
    assert depth(ops) < SMALL
    resp = await client.patch(f"Patient/{pid}", content=json.dumps(ops), headers=JSON_PATCH)
    assert_too_deep(resp, SMALL, "Patient.extension[0]")
    await _unchanged(client, pid)


FHIRPATH_ADD = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
    {"name": "type", "valueCode": "add"},
    {"name": "path", "valueString": "Patient" + ".extension[0]" * 5},
    {"name": "name", "valueString": "extension"},
    {"name": "value", "part": [{"name": "url", "valueUri": "http://example.org/more"},
                               {"name": "valueString", "valueString": "y"}]}]}]}


@pytest.mark.parametrize("settings_overrides", [{"fhir_max_json_depth": SMALL}])
async def test_fhirpath_patch_result(client: httpx.AsyncClient) -> None:
    pid = await _stored_at_limit(client)
    assert depth(FHIRPATH_ADD) < SMALL
    resp = await client.patch(f"Patient/{pid}", json=FHIRPATH_ADD)
    assert_too_deep(resp, SMALL, "Patient.extension[0]")
    await _unchanged(client, pid)
    resp = await client.patch("Patient", params={"_id": pid}, json=FHIRPATH_ADD)
    assert_too_deep(resp, SMALL)
    await _unchanged(client, pid)


@pytest.mark.parametrize("settings_overrides", [{"fhir_max_json_depth": SMALL}])
@pytest.mark.parametrize("bundle_type", ["transaction", "batch"])
async def test_patch_entry_result(client: httpx.AsyncClient, bundle_type: str) -> None:
    pid = await _stored_at_limit(client)
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": [
        {"resource": FHIRPATH_ADD, "request": {"method": "PATCH", "url": f"Patient/{pid}"}}]}
    assert depth(bundle) <= SMALL
    resp = await client.post("", json=bundle)
    if bundle_type == "transaction":
        assert_too_deep(resp, SMALL, "Bundle.entry[0]")
    else:
        assert resp.status_code == 200, resp.text
        entry = resp.json()["entry"][0]["response"]
        assert entry["status"].startswith("400")
        assert "nested too deeply" in entry["outcome"]["issue"][0]["diagnostics"]
    await _unchanged(client, pid)
