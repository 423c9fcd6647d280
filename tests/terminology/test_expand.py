"""ValueSet/$expand: counts the R4 definitions and simple-icd-10-cm imply, paging, filters."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import httpx
import pytest
import simple_icd_10_cm as cm

from tests.support.terminology import ICD, raw_resource

V3 = "http://terminology.hl7.org/ValueSet/"


def all_codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out += all_codes(c.get("concept", []))
    return out


def subtree(concepts: list[dict[str, Any]], code: str) -> set[str]:
    """The code and everything nested under it (wherever it appears)."""
    found: set[str] = set()
    for c in concepts:
        if c["code"] == code:
            found |= {code, *all_codes(c.get("concept", []))}
        found |= subtree(c.get("concept", []), code)
    return found


async def expand(tx: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    r = await tx.get("ValueSet/$expand", params=query)
    assert r.status_code == 200, r.text
    expansion: dict[str, Any] = r.json()["expansion"]
    return expansion


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion.get("contains", [])]


async def test_whole_code_system_includes(tx: httpx.AsyncClient) -> None:
    for vs_url, cs_url in (("http://hl7.org/fhir/ValueSet/administrative-gender",
                            "http://hl7.org/fhir/administrative-gender"),
                           ("http://hl7.org/fhir/ValueSet/claim-use",
                            "http://hl7.org/fhir/claim-use")):
        value_set = raw_resource("ValueSet", vs_url)
        assert [i["system"] for i in value_set["compose"]["include"]] == [cs_url]
        expected = all_codes(raw_resource("CodeSystem", cs_url)["concept"])
        found = await expand(tx, url=vs_url)
        assert found["total"] == len(expected)
        assert codes(found) == expected


async def test_is_a_filters(tx: httpx.AsyncClient) -> None:
    for name in ("v3-ActClassObservation", "v3-EntityClassRoot", "v3-RoleClassRoot"):
        value_set = raw_resource("ValueSet", V3 + name)
        (include,) = value_set["compose"]["include"]
        (flt,) = include["filter"]
        assert flt["op"] == "is-a"
        system = raw_resource("CodeSystem", include["system"])
        expected = subtree(system["concept"], flt["value"])
        found = await expand(tx, url=V3 + name)
        assert found["total"] == len(expected) > 1, name
        assert set(codes(found)) == expected


async def test_paging_over_icd10cm_in_tabular_order(tx: httpx.AsyncClient) -> None:
    await tx.put("ValueSet/icd-all", json={
        "resourceType": "ValueSet", "id": "icd-all", "url": "urn:test:vs:icd-all",
        "status": "active", "compose": {"include": [{"system": ICD}]}})
    every = cm.get_all_codes(True)
    page = await expand(tx, url="urn:test:vs:icd-all", offset=1000, count=25)
    assert page["total"] == len(every)
    names = list(every[1000:1025])
    assert not any(cm.is_block(n) and cm.is_category(n) for n in names)
    assert codes(page) == names
    assert [c["display"] for c in page["contains"]] == [cm.get_description(n) for n in names]
    r = await tx.get("ValueSet/$expand", params={"url": "urn:test:vs:icd-all"})
    assert r.status_code == 400  # more than the limit without count: refused, not truncated
    assert r.json()["issue"][0]["code"] == "too-costly"


def words(text: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", text).casefold()
    return set(re.findall(r"[^\W_]+", "".join(ch for ch in folded
                                               if not unicodedata.combining(ch))))


def icd_filter_matches(filter_text: str, under: str | None = None) -> list[str]:
    """The documented rule, on the package's data: every filter word starts a word of the
    description, an inclusion term or the code (lower case)."""
    wanted = words(filter_text)
    out = []
    for name in cm.get_all_codes(True):
        if under is not None and not (name == under or cm.is_ancestor(under, name)):
            continue
        have = words(cm.get_description(name)) | {name.lower()}
        for term in (cm.get_inclusion_term(name)
                     if not (cm.is_chapter(name) or cm.is_block(name)) else []):
            have |= words(term)
        if all(any(h.startswith(w) for h in have) for w in wanted):
            out.append(name)
    return out


@pytest.mark.slow
async def test_text_filter_over_icd10cm(tx: httpx.AsyncClient) -> None:
    await tx.put("ValueSet/icd-all", json={
        "resourceType": "ValueSet", "id": "icd-all", "url": "urn:test:vs:icd-all",
        "status": "active", "compose": {"include": [{"system": ICD}]}})
    for text in ("diab mell hyperglyc", "asthma", "fract femur right init"):
        expected = icd_filter_matches(text)
        found = await expand(tx, url="urn:test:vs:icd-all", filter=text, count=50)
        assert found["total"] == len(expected), text
        assert codes(found) == expected[:50]


async def test_compose_rules(tx: httpx.AsyncClient) -> None:
    gender = "http://hl7.org/fhir/ValueSet/administrative-gender"
    value_set = {"resourceType": "ValueSet", "status": "active", "compose": {
        "include": [{"valueSet": [gender]},
                    {"system": ICD, "filter": [{"property": "kind", "op": "=",
                                                "value": "chapter"}]},
                    {"system": ICD, "concept": [{"code": "I10"}, {"code": "E11.65"}]},
                    {"system": "http://loinc.org", "concept": [{"code": "29463-7",
                                                                "display": "Body weight"}]}],
        "exclude": [{"system": "http://hl7.org/fhir/administrative-gender",
                     "concept": [{"code": "unknown"}]},
                    {"system": ICD, "filter": [{"property": "concept", "op": "regex",
                                                "value": "1[0-9]"}]}]}}
    body = {"resourceType": "Parameters", "parameter": [{"name": "valueSet",
                                                         "resource": value_set}]}
    r = await tx.post("ValueSet/$expand", json=body)
    assert r.status_code == 200, r.text
    found = r.json()["expansion"]
    chapters = [c for c in cm.get_all_codes(True) if cm.is_chapter(c)]
    expected = (["male", "female", "other"] + [c for c in chapters if not re.fullmatch("1[0-9]", c)]
                + ["E11.65", "I10", "29463-7"])
    assert sorted(codes(found)) == sorted(expected)
    assert found["total"] == len(expected)
    r = await tx.post("ValueSet/$expand", json=value_set)  # a bare ValueSet body
    assert r.json()["expansion"]["total"] == len(expected)


async def test_descendent_of_is_not_a_exists_and_active_only(tx: httpx.AsyncClient) -> None:
    include = {"system": ICD, "filter": [{"property": "concept", "op": "descendent-of",
                                          "value": "E11.6"}]}
    value_set = {"resourceType": "ValueSet", "status": "active",
                 "compose": {"include": [include]}}
    r = await tx.post("ValueSet/$expand", json=value_set)
    assert set(codes(r.json()["expansion"])) == set(cm.get_descendants("E11.6"))
    include["filter"] = [{"property": "concept", "op": "is-a", "value": "E08-E13"},
                         {"property": "concept", "op": "is-not-a", "value": "E11"},
                         {"property": "billable", "op": "exists", "value": "true"}]
    r = await tx.post("ValueSet/$expand", json=value_set)
    expected = {c for c in ["E08-E13", *cm.get_descendants("E08-E13")]
                if c != "E11" and not cm.is_ancestor("E11", c)}
    assert set(codes(r.json()["expansion"])) == expected
    system = raw_resource("CodeSystem", "http://terminology.hl7.org/CodeSystem/v3-ActMood")
    retired = {c["code"] for c in _flat(system["concept"])
               if any(p.get("code") == "status" and p.get("valueCode") == "retired"
                      for p in c.get("property", []))}
    everything = await expand(tx, url=V3 + "v3-ActMood")
    active = await expand(tx, url=V3 + "v3-ActMood", activeOnly="true")
    assert retired and set(codes(active)) == set(codes(everything)) - retired


def _flat(concepts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for c in concepts for x in (c, *_flat(c.get("concept", [])))]


async def test_designations_and_instance_form(tx: httpx.AsyncClient) -> None:
    await tx.put("ValueSet/asthma", json={
        "resourceType": "ValueSet", "id": "asthma", "url": "urn:test:vs:asthma",
        "status": "active", "compose": {"include": [{"system": ICD, "concept": [
            {"code": "J45.909"}]}]}})
    r = await tx.get("ValueSet/asthma/$expand", params={"includeDesignations": "true"})
    (entry,) = r.json()["expansion"]["contains"]
    assert [d["value"] for d in entry["designation"]] == cm.get_inclusion_term("J45.909")


async def test_bad_requests_are_4xx(tx: httpx.AsyncClient) -> None:
    cases = [
        ({"url": "urn:test:nothing"}, 404),
        ({"url": "http://hl7.org/fhir/ValueSet/procedure-code"}, 422),  # SNOMED CT: not here
        ({"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "count": "-1"}, 400),
        ({"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "count": "x"}, 400),
        ({"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "activeOnly": "yes"}, 400),
        ({"url": "http://hl7.org/fhir/ValueSet/administrative-gender", "nope": "1"}, 400),
        ({}, 400),
    ]
    for query, status in cases:
        r = await tx.get("ValueSet/$expand", params=query)
        assert r.status_code == status, (query, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    broken = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [
        {"system": ICD, "filter": [{"property": "concept", "op": "regex", "value": "("}]}]}}
    assert (await tx.post("ValueSet/$expand", json=broken)).status_code == 400
    broken["compose"]["include"][0]["filter"] = [{"property": "concept", "op": "is-a"}]
    assert (await tx.post("ValueSet/$expand", json=broken)).status_code == 400
    loop = {"resourceType": "ValueSet", "id": "loop", "url": "urn:test:vs:loop",
            "status": "active", "compose": {"include": [{"valueSet": ["urn:test:vs:loop"]}]}}
    await tx.put("ValueSet/loop", json=loop)
    assert (await tx.get("ValueSet/loop/$expand")).status_code == 422
