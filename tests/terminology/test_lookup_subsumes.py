"""$lookup and $subsumes, with expectations from simple-icd-10-cm's own API and the R4 files."""

from __future__ import annotations

import random

import httpx
import simple_icd_10_cm as cm

from tests.support.terminology import ICD, parameters, params, raw_resource


def ambiguous(name: str) -> bool:
    """A one-category block and its category share a name in the package."""
    return cm.is_block(name) and cm.is_category(name)


def expected_parent(code: str) -> str | None:
    parent = cm.get_parent(code)
    if not parent:
        return None
    if ambiguous(parent) and cm.is_category(code) and len(code) == 3:
        return f"{parent}-{parent}"  # the category's block, as the server names it
    return parent


def sample(n: int, seed: int = 11) -> list[str]:
    names = [c for c in cm.get_all_codes(True) if not ambiguous(c)]
    return random.Random(seed).sample(names, n)


async def lookup(tx: httpx.AsyncClient, code: str, system: str = ICD) -> dict[str, list]:
    r = await tx.get("CodeSystem/$lookup", params={"system": system, "code": code})
    assert r.status_code == 200, r.text
    return params(r.json())


def props(found: dict[str, list]) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in found.get("property", []):
        out.setdefault(p["code"][0], []).append(p["value"][0])
    return out


async def test_lookup_display_and_parent_of_a_sample(tx: httpx.AsyncClient) -> None:
    for code in sample(40):
        found = await lookup(tx, code)
        assert found["display"] == [cm.get_description(code)], code
        parent = expected_parent(code)
        assert props(found).get("parent", []) == ([parent] if parent else []), code
        assert found["version"]


async def test_lookup_children_and_kind(tx: httpx.AsyncClient) -> None:
    found = props(await lookup(tx, "E11"))
    assert found["child"] == cm.get_children("E11")
    assert found["kind"] == ["category"]
    leaf = props(await lookup(tx, "S72.001A"))
    assert leaf["billable"] == [cm.is_leaf("S72.001A")]
    assert leaf["parent"] == [cm.get_parent("S72.001A")]
    chapter = props(await lookup(tx, "4"))
    blocks = cm.get_children("4")
    assert any(ambiguous(b) for b in blocks)  # E36: a block of one category
    assert chapter["child"] == [f"{b}-{b}" if ambiguous(b) else b for b in blocks]
    block = props(await lookup(tx, "E36-E36"))
    assert block["child"] == ["E36"] and block["parent"] == ["4"]


async def test_lookup_post_with_a_coding_and_chosen_properties(tx: httpx.AsyncClient) -> None:
    body = parameters(coding=("valueCoding", {"system": ICD, "code": "J45.909"}),
                      property=("valueCode", "parent"))
    r = await tx.post("CodeSystem/$lookup", json=body)
    assert r.status_code == 200, r.text
    found = params(r.json())
    assert found["display"] == [cm.get_description("J45.909")]
    assert {p["code"][0] for p in found["property"]} == {"parent"}
    assert [d["value"][0] for d in found.get("designation", [])] == \
        cm.get_inclusion_term("J45.909")


async def test_lookup_in_an_r4_code_system(tx: httpx.AsyncClient) -> None:
    system = raw_resource("CodeSystem", "http://hl7.org/fhir/administrative-gender")
    for concept in system["concept"]:
        found = await lookup(tx, concept["code"], system["url"])
        assert found["display"] == [concept["display"]]
        assert found["name"] == [system["name"]]


async def test_lookup_of_unknown_code_or_system_is_404(tx: httpx.AsyncClient) -> None:
    r = await tx.get("CodeSystem/$lookup", params={"system": ICD, "code": "E11.66"})
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    r = await tx.get("CodeSystem/$lookup", params={"system": "http://nowhere", "code": "x"})
    assert r.status_code == 404
    r = await tx.get("CodeSystem/$lookup", params={"code": "E11"})
    assert r.status_code == 400


async def subsumes(tx: httpx.AsyncClient, a: str, b: str) -> str:
    r = await tx.get("CodeSystem/$subsumes", params={"system": ICD, "codeA": a, "codeB": b})
    assert r.status_code == 200, r.text
    return str(params(r.json())["outcome"][0])


async def test_subsumes_follows_the_tabular_hierarchy(tx: httpx.AsyncClient) -> None:
    rng = random.Random(5)
    for code in sample(12, seed=3):
        ancestors = [a for a in cm.get_ancestors(code) if not ambiguous(a)]
        if not ancestors:
            continue
        above = rng.choice(ancestors)
        assert cm.is_ancestor(above, code)
        assert await subsumes(tx, above, code) == "subsumes"
        assert await subsumes(tx, code, above) == "subsumed-by"
        assert await subsumes(tx, code, code) == "equivalent"
    assert not cm.is_ancestor("E11", "I10") and not cm.is_ancestor("I10", "E11")
    assert await subsumes(tx, "E11", "I10") == "not-subsumed"


async def test_subsumes_with_codings_and_bad_input(tx: httpx.AsyncClient) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "codingA", "valueCoding": {"system": ICD, "code": "E08-E13"}},
        {"name": "codingB", "valueCoding": {"system": ICD, "code": "E11.65"}}]}
    r = await tx.post("CodeSystem/$subsumes", json=body)
    assert params(r.json())["outcome"] == ["subsumes"]
    r = await tx.get("CodeSystem/$subsumes", params={"system": ICD, "codeA": "E11", "codeB": "ZZZ"})
    assert r.status_code == 404
    r = await tx.get("CodeSystem/$subsumes", params={"codeA": "E11", "codeB": "E11.9"})
    assert r.status_code == 400
