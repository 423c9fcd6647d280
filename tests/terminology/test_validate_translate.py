"""$validate-code (ValueSet and CodeSystem) and ConceptMap/$translate, expectations from the
R4 definition files and simple-icd-10-cm."""

from __future__ import annotations

from typing import Any

import httpx
import simple_icd_10_cm as cm

from tests.support.terminology import ICD, params, raw_resource

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER = "http://hl7.org/fhir/administrative-gender"


async def check(tx: httpx.AsyncClient, path: str, **query: Any) -> dict[str, list[Any]]:
    r = await tx.get(path, params=query)
    assert r.status_code == 200, r.text
    return params(r.json())


async def test_value_set_validate_code(tx: httpx.AsyncClient) -> None:
    for concept in raw_resource("CodeSystem", GENDER)["concept"]:
        found = await check(tx, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER,
                            code=concept["code"])
        assert found["result"] == [True]
        assert found["display"] == [concept["display"]]
    found = await check(tx, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER, code="man")
    assert found["result"] == [False] and found["message"]
    found = await check(tx, "ValueSet/$validate-code", url=GENDER_VS, system=ICD, code="E11.9")
    assert found["result"] == [False]
    found = await check(tx, "ValueSet/$validate-code", url=GENDER_VS, system=GENDER,
                        code="male", display="Female")
    assert found["result"] == [False] and found["display"] == ["Male"]


async def test_value_set_validate_codeable_concept_post(tx: httpx.AsyncClient) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": GENDER_VS},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": ICD, "code": "E11.9"}, {"system": GENDER, "code": "other"}]}}]}
    r = await tx.post("ValueSet/$validate-code", json=body)
    assert params(r.json())["result"] == [True]


async def test_validate_against_an_icd_value_set_of_more_than_1000_codes(
        tx: httpx.AsyncClient) -> None:
    await tx.put("ValueSet/injuries", json={
        "resourceType": "ValueSet", "id": "injuries", "url": "urn:test:vs:injuries",
        "status": "active", "compose": {"include": [{"system": ICD, "filter": [
            {"property": "concept", "op": "is-a", "value": "S70-S79"}]}]}})
    inside = cm.get_descendants("S70-S79")
    assert len(inside) > 1000
    for code in (inside[0], inside[len(inside) // 2], inside[-1]):
        found = await check(tx, "ValueSet/injuries/$validate-code", system=ICD, code=code)
        assert found["result"] == [True], code
        assert found["display"] == [cm.get_description(code)]
    found = await check(tx, "ValueSet/injuries/$validate-code", system=ICD, code="E11.9")
    assert found["result"] == [False]
    found = await check(tx, "ValueSet/injuries/$validate-code", system=ICD, code="S72.99ZZ")
    assert found["result"] == [False] and "not in" in found["message"][0]


async def test_code_system_validate_code(tx: httpx.AsyncClient) -> None:
    found = await check(tx, "CodeSystem/$validate-code", url=ICD, code="E11.65")
    assert found["result"] == [True]
    assert found["display"] == [cm.get_description("E11.65")]
    found = await check(tx, "CodeSystem/$validate-code", url=ICD, code="E11.66")
    assert found["result"] == [False]
    found = await check(tx, "CodeSystem/$validate-code", url=ICD, code="E11.65",
                        display="Type 1 diabetes")
    assert found["result"] == [False]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": GENDER, "code": "female"}}]}
    r = await tx.post("CodeSystem/$validate-code", json=body)
    assert params(r.json())["result"] == [True]
    r = await tx.get("CodeSystem/$validate-code", params={"url": "urn:nowhere", "code": "x"})
    assert r.status_code == 404
    r = await tx.get("CodeSystem/$validate-code", params={"url": ICD})
    assert r.status_code == 400


async def test_validate_code_unknown_value_set_and_bad_input(tx: httpx.AsyncClient) -> None:
    r = await tx.get("ValueSet/$validate-code", params={"url": "urn:none", "system": GENDER,
                                                        "code": "male"})
    assert r.status_code == 404
    r = await tx.get("ValueSet/$validate-code", params={"url": GENDER_VS, "code": "male"})
    assert r.status_code == 400  # a code without its system
    r = await tx.get("ValueSet/$validate-code", params={"url": GENDER_VS, "code": "male",
                                                        "coding": "x"})
    assert r.status_code == 400


def mapped(cmap: dict[str, Any], code: str, *, reverse: bool = False) -> list[tuple[str, str]]:
    """(equivalence, code) pairs a map's groups give for a code."""
    out = []
    for group in cmap["group"]:
        for element in group["element"]:
            for target in element.get("target", []):
                here, there = ((target["code"], element["code"]) if reverse
                               else (element["code"], target.get("code")))
                if here == code:
                    out.append((target["equivalence"], there))
    return out


async def test_translate_with_an_r4_concept_map(tx: httpx.AsyncClient) -> None:
    url = "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v3"
    cmap = raw_resource("ConceptMap", url)
    target_system = cmap["group"][0]["target"]
    for code in ("male", "female", "unknown", "other"):
        found = await check(tx, "ConceptMap/$translate", url=url, system=GENDER, code=code)
        expected = [(e, c) for e, c in mapped(cmap, code) if e not in ("unmatched", "disjoint")]
        assert found["result"] == [bool(expected)], code
        got = [(m["equivalence"][0], m["concept"][0]["code"]) for m in found.get("match", [])
               if "concept" in m]
        assert got == expected
        assert all(m["concept"][0]["system"] == target_system
                   for m in found.get("match", []) if "concept" in m)
    found = await check(tx, "ConceptMap/$translate", system=target_system, code="F",
                        reverse="true")
    # Only the v3 map has groups whose target is that system.
    assert [m["concept"][0]["code"] for m in found["match"] if "concept" in m] == \
        [c for _, c in mapped(cmap, "F", reverse=True)]
    found = await check(tx, "ConceptMap/$translate", system=GENDER, code="male",
                        targetsystem="http://terminology.hl7.org/CodeSystem/v2-0001")
    v2 = raw_resource("ConceptMap", "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2")
    assert [m["concept"][0]["code"] for m in found["match"]] == [c for _, c in mapped(v2, "male")]
    found = await check(tx, "ConceptMap/$translate", system=GENDER, code="nope")
    assert found["result"] == [False]
    r = await tx.get("ConceptMap/$translate", params={"url": "urn:none", "code": "male"})
    assert r.status_code == 404
