"""Only the resource types FHIR R4 (4.0.1) defines are served and advertised; the R4B
additions answer like a type that does not exist, on every route."""

from __future__ import annotations

import pkgutil
from functools import cache
from typing import Any

import httpx
import pytest
from fhir.resources import R4B
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from tests.factories import patient
from tools.data_sets import definition

R4_ABSTRACT = {"Resource", "DomainResource"}  # the R4 spec's abstract base resources
MADE_UP = "Spaceship"
R4B_ONLY_NAMED_IN_ISSUE = ("AdministrableProductDefinition", "ClinicalUseDefinition",
                           "Citation", "Ingredient", "SubscriptionTopic")


@cache
def r4_types() -> frozenset[str]:
    bundle = definition("valuesets.json")
    codes = next(e["resource"]["concept"] for e in bundle["entry"]
                 if e["resource"]["resourceType"] == "CodeSystem"
                 and e["resource"]["url"] == "http://hl7.org/fhir/resource-types")
    assert next(e["resource"]["version"] for e in bundle["entry"]
                if e["resource"].get("url") == "http://hl7.org/fhir/resource-types") == "4.0.1"
    return frozenset(c["code"] for c in codes) - R4_ABSTRACT


def has_r4b_model(type_: str) -> bool:
    try:
        return issubclass(get_fhir_model_class(type_), Resource)
    except (KeyError, ValueError, AttributeError, ImportError):
        return False


@cache
def r4b_types() -> frozenset[str]:
    """Every resource type the R4B models define (one module per type)."""
    names = [info.name for info in pkgutil.iter_modules(R4B.__path__)]
    return frozenset(t for n in names if (t := _class_named(n))) - R4_ABSTRACT


def _class_named(module_name: str) -> str | None:
    module = __import__(f"fhir.resources.R4B.{module_name}", fromlist=["_"])
    for name, obj in vars(module).items():
        if (isinstance(obj, type) and name.lower() == module_name and issubclass(obj, Resource)
                and obj.__module__ == module.__name__):
            return name
    return None


async def test_capability_statement_lists_r4_types_with_a_model(
        client: httpx.AsyncClient) -> None:
    cs = (await client.get("metadata")).json()
    assert cs["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert types == {t for t in r4_types() if has_r4b_model(t)}
    r4b_only = r4b_types() - r4_types()
    assert set(R4B_ONLY_NAMED_IN_ISSUE) <= r4b_only
    assert not types & r4b_only
    mentioned = {ref.split(":")[0] for r in cs["rest"][0]["resource"]
                 for ref in r.get("searchRevInclude", [])}
    assert mentioned <= types


def routes(type_: str, pid: str) -> list[tuple[str, str, dict[str, Any]]]:
    body = {"resourceType": type_, "status": "active"}
    return [
        ("GET", f"{type_}/x", {}),
        ("GET", f"{type_}/x/_history/1", {}),
        ("GET", f"{type_}/x/_history", {}),
        ("GET", f"{type_}/_history", {}),
        ("GET", f"{type_}?status=active", {}),
        ("POST", f"{type_}/_search", {"data": {"status": "active"}}),
        ("POST", type_, {"json": body}),
        ("PUT", f"{type_}/x", {"json": {**body, "id": "x"}}),
        ("PUT", f"{type_}?status=active", {"json": body}),
        ("PATCH", f"{type_}/x", {"json": {"resourceType": "Parameters"}}),
        ("DELETE", f"{type_}/x", {}),
        ("DELETE", f"{type_}?status=active", {}),
        ("GET", f"Patient/{pid}/{type_}", {}),
        ("POST", f"{type_}/$submit", {"json": body}),
        ("GET", "Patient", {"params": {"_include": f"Patient:link:{type_}"}}),
        ("GET", "Patient", {"params": {"_revinclude": f"{type_}:subject"}}),
        ("GET", "Observation", {"params": {f"subject:{type_}": "x"}}),
        ("GET", "Patient", {"params": {f"_has:{type_}:subject:status": "active"}}),
        ("POST", "Patient", {"json": {**patient(), "contained": [{**body, "id": "c"}]}}),
    ]


def _shape(resp: httpx.Response) -> tuple[int, str]:
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome", resp.text
    return resp.status_code, outcome["issue"][0]["code"]


@pytest.mark.parametrize("type_", R4B_ONLY_NAMED_IN_ISSUE)
async def test_r4b_types_answer_like_unknown_types(client: httpx.AsyncClient,
                                                    type_: str) -> None:
    pid = (await client.post("Patient", json=patient())).json()["id"]
    for (method, url, kwargs), (_, made_up_url, made_up_kwargs) in zip(
            routes(type_, pid), routes(MADE_UP, pid), strict=True):
        got = await client.request(method, url, **kwargs)
        like = await client.request(method, made_up_url, **made_up_kwargs)
        assert 400 <= got.status_code < 500, (method, url, got.text)
        assert _shape(got) == _shape(like), (method, url, got.text, like.text)
        if url.startswith(type_):
            assert got.status_code == 404, (method, url, got.text)
    assert (await client.get("Patient")).json()["total"] == 1  # nothing else was written


@pytest.mark.parametrize("bundle_type", ["transaction", "batch"])
async def test_r4b_types_in_bundles(client: httpx.AsyncClient, bundle_type: str) -> None:
    def bundle(type_: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": bundle_type, "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": type_, "status": "active"},
             "request": {"method": "POST", "url": type_}},
            {"request": {"method": "GET", "url": f"{type_}/x"}}]}

    got = await client.post("", json=bundle("Citation"))
    like = await client.post("", json=bundle(MADE_UP))
    assert got.status_code == like.status_code
    if bundle_type == "transaction":
        assert got.status_code == 404, got.text
        assert got.json()["issue"][0]["expression"][0] == "Bundle.entry[1]"
        assert (await client.get("Patient")).json()["total"] == 0
    else:
        statuses = [e["response"]["status"] for e in got.json()["entry"]]
        assert statuses[0].startswith("201")
        assert statuses[1:] == ["404", "404"]
        assert statuses == [e["response"]["status"] for e in like.json()["entry"]]
