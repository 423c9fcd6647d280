"""The CapabilityStatement lists each type's search parameters, includes and revincludes."""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import httpx

from tests.search.data import definitions_search_parameters

COMMON = {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_profile": "uri",
          "_security": "token", "_source": "uri"}


@cache
def official() -> dict[str, dict[str, dict]]:
    """type -> code -> SearchParameter, from the R4 definitions (only those with an expression)."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for sp in definitions_search_parameters():
        if not sp.get("expression") or sp["type"] == "special":
            continue
        for base in sp["base"]:
            out[base][sp["code"]] = sp
    return out


async def _statement(client: httpx.AsyncClient) -> dict[str, dict]:
    resp = await client.get("metadata")
    assert resp.status_code == 200
    return {r["type"]: r for r in resp.json()["rest"][0]["resource"]}


async def test_search_params_listed_with_type_and_documentation(client: httpx.AsyncClient) -> None:
    resources = await _statement(client)
    defs = official()
    assert {"Patient", "Encounter", "Observation", "Claim"} <= set(resources)
    problems: list[str] = []
    for rtype, res in resources.items():
        listed = {p["name"]: p for p in res.get("searchParam", [])}
        expected = {code: sp["type"] for code, sp in defs.get(rtype, {}).items()}
        expected.update(COMMON)
        for name, ptype in sorted(expected.items()):
            if name not in listed:
                problems.append(f"{rtype}: {name} not listed")
                continue
            if listed[name]["type"] != ptype:
                problems.append(f"{rtype}: {name} has type {listed[name]['type']}, not {ptype}")
            if not str(listed[name].get("documentation", "")).strip():
                problems.append(f"{rtype}: {name} has no documentation")
        assert "search-type" in {i["code"] for i in res["interaction"]}
    assert not problems, problems


async def test_search_param_definitions_point_at_official_urls(client: httpx.AsyncClient) -> None:
    resources = await _statement(client)
    defs = official()
    for rtype in ("Patient", "Encounter", "Observation"):
        for p in resources[rtype]["searchParam"]:
            sp = defs.get(rtype, {}).get(p["name"])
            if sp is not None and "definition" in p:
                assert p["definition"] == sp["url"], (rtype, p["name"])


async def test_search_include_and_revinclude(client: httpx.AsyncClient) -> None:
    resources = await _statement(client)
    defs = official()
    enc_refs = {f"Encounter:{code}" for code, sp in defs["Encounter"].items()
                if sp["type"] == "reference"}
    assert {"Encounter:subject", "Encounter:patient", "Encounter:service-provider"} <= enc_refs
    assert enc_refs <= set(resources["Encounter"]["searchInclude"])
    rev = set(resources["Patient"]["searchRevInclude"])
    expected_rev = {f"{base}:{code}" for base, params in defs.items() if base in resources
                    for code, sp in params.items()
                    if sp["type"] == "reference" and "Patient" in sp.get("target", [])}
    assert {"Encounter:subject", "Encounter:patient", "Observation:subject"} <= expected_rev
    assert expected_rev <= rev
    # a revinclude names a reference parameter that can point at the type
    for item in rev:
        base, code = item.split(":")
        sp = defs.get(base, {}).get(code)
        if sp is not None:
            assert sp["type"] == "reference" and ("Patient" in sp.get("target", []) or
                                                  not sp.get("target")), item


async def test_every_listed_parameter_is_accepted(client: httpx.AsyncClient) -> None:
    """What the statement lists, a search accepts (here with :missing, valid on every type)."""
    resources = await _statement(client)
    refused: list[str] = []
    for rtype in ("Patient", "Encounter", "Observation", "Claim", "Coverage", "Practitioner",
                  "Organization", "ValueSet", "RiskAssessment", "ServiceRequest"):
        for p in resources[rtype]["searchParam"]:
            # _id always has a value; a server may refuse _id:missing as meaningless
            if p["type"] == "special" or p["name"] == "_id":
                continue
            resp = await client.get(rtype, params={f"{p['name']}:missing": "true"})
            if resp.status_code != 200:
                refused.append(f"{rtype}?{p['name']}:missing=true -> {resp.status_code}")
    assert not refused, refused


async def test_last_updated_missing(client: httpx.AsyncClient) -> None:
    """Every stored resource has meta.lastUpdated: :missing=false finds all, :missing=true none."""
    for i in range(3):
        assert (await client.put(f"Patient/m{i}", json={"resourceType": "Patient",
                                                         "id": f"m{i}"})).status_code == 201
    resp = await client.get("Patient", params={"_lastUpdated:missing": "false"})
    assert resp.status_code == 200, resp.text
    assert {e["resource"]["id"] for e in resp.json().get("entry", [])} == {"m0", "m1", "m2"}
    resp = await client.get("Patient", params={"_lastUpdated:missing": "true"})
    assert resp.status_code == 200, resp.text
    assert resp.json().get("entry", []) == []
