"""The CapabilityStatement says what the server really does."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.core.models import resource_types
from tests.factories import patient
from tools.data_sets import definition


async def test_metadata(client: httpx.AsyncClient) -> None:
    resp = await client.get("metadata")
    assert resp.status_code == 200
    cs = resp.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    rest = cs["rest"][0]
    types = [r["type"] for r in rest["resource"]]
    assert types == sorted(resource_types())
    for mission in ("Patient", "Appointment", "Encounter", "Coverage", "Claim",
                    "ClaimResponse", "Invoice"):
        assert mission in types
    claim = next(r for r in rest["resource"] if r["type"] == "Claim")
    codes = {i["code"] for i in claim["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "history-instance"} <= codes
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    assert "application/json-patch+json" in cs["patchFormat"]
    official = definition("search-parameters.json")
    expected = {e["resource"]["code"] for e in official["entry"]
                if set(e["resource"]["base"]) & {"Claim", "Resource"}
                and e["resource"].get("expression") and e["resource"]["type"] != "special"}
    assert {p["name"] for p in claim["searchParam"]} == expected
    assert all(p["type"] and p["definition"] for p in claim["searchParam"])
    assert "Claim:patient" in claim["searchInclude"]
    assert "ClaimResponse:request" in claim["searchRevInclude"]
    # the statement itself is a valid resource the server would accept
    stored = await client.put("CapabilityStatement/server", json=cs)
    assert stored.status_code == 201, stored.text


@pytest.mark.parametrize("settings_overrides", [{"fhir_referential_integrity": True}])
async def test_referential_integrity_setting(client: httpx.AsyncClient) -> None:
    enc = {"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"},
           "subject": {"reference": "Patient/not-here"}}
    refused = await client.post("Encounter", json=enc)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Encounter.subject.reference"]
    await client.put("Patient/not-here", json=patient(id_="not-here"))
    assert (await client.post("Encounter", json=enc)).status_code == 201


async def test_references_accepted_by_default(client: httpx.AsyncClient) -> None:
    enc = {"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"},
           "subject": {"reference": "Patient/arrives-later"}}
    assert (await client.post("Encounter", json=enc)).status_code == 201
