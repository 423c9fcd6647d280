"""Token search modifiers :in, :not-in, :below and :above over Conditions coded with
ICD-10-CM (and a second code system), with value sets of more than 1,000 codes; expected
matches computed from simple-icd-10-cm's hierarchy."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
import simple_icd_10_cm as cm
from fastapi import FastAPI

from tests.support.store import fhir_client, mint
from tests.support.terminology import ICD

LOCAL = "urn:test:cs:local-problems"
SUBJECT = f"Patient/{uuid.uuid4().hex[:12]}"
LIST_CODES = [c for c in cm.get_descendants("S00-S09") if cm.is_leaf(c)][:1200]


def below(ancestor: str, code: str) -> bool:
    return code == ancestor or cm.is_ancestor(ancestor, code)


@pytest.fixture(scope="module")
async def coded(tx: httpx.AsyncClient) -> dict[str, tuple[str, str] | None]:
    """Conditions of one patient: a sample of ICD-10-CM codes at every level, codes of a local
    code system, and two without a code. Returns id -> (system, code)."""
    rng = random.Random(7)
    picks = rng.sample([c for c in cm.get_all_codes(True)
                        if not (cm.is_block(c) and cm.is_category(c))], 150)
    picks += ["E11", "E11.6", "E11.65", "E10.9", "I10", "4", "E08-E13", LIST_CODES[0],
              LIST_CODES[1199], LIST_CODES[600], "S72.001A", "S72.90XA"]
    picks += [c for c in cm.get_descendants("S70-S79") if cm.is_leaf(c)][:40:3]
    await tx.put("CodeSystem/local-problems", json={
        "resourceType": "CodeSystem", "id": "local-problems", "url": LOCAL, "status": "active",
        "content": "complete", "hierarchyMeaning": "is-a", "concept": [
            {"code": "P", "display": "Problems", "concept": [
                {"code": "P1", "display": "Back pain"}, {"code": "P2", "display": "Knee pain"}]},
            {"code": "Q", "display": "Other"}]})
    out: dict[str, tuple[str, str] | None] = {}
    entries = [((ICD, c)) for c in picks] + [(LOCAL, c) for c in ("P", "P1", "P2", "Q")]
    for coding in [*entries, None, None]:
        resource: dict[str, Any] = {"resourceType": "Condition", "subject": {"reference": SUBJECT}}
        if coding is not None:
            resource["code"] = {"coding": [{"system": coding[0], "code": coding[1]}]}
        r = await tx.post("Condition", json=resource)
        assert r.status_code == 201, r.text
        out[r.json()["id"]] = coding
    await tx.put("ValueSet/big-list", json={
        "resourceType": "ValueSet", "id": "big-list", "url": "urn:test:vs:big-list",
        "status": "active", "compose": {"include": [
            {"system": ICD, "concept": [{"code": c} for c in LIST_CODES]},
            {"system": LOCAL, "filter": [{"property": "concept", "op": "is-a", "value": "P"}]}]}})
    await tx.put("ValueSet/hips", json={
        "resourceType": "ValueSet", "id": "hips", "url": "urn:test:vs:hips", "status": "active",
        "compose": {"include": [{"system": ICD, "filter": [
            {"property": "concept", "op": "is-a", "value": "S70-S79"}]}]}})
    return out


async def found(tx: httpx.AsyncClient, criteria: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    r = await tx.get("Condition", params={**criteria, "subject": SUBJECT, "_count": "500"})
    assert r.status_code == 200, r.text
    bundle = r.json()
    ids |= {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert bundle["total"] == len(ids)
    return ids


def where(coded: dict[str, tuple[str, str] | None], test: Any) -> set[str]:
    return {i for i, c in coded.items() if test(c)}


async def test_in_a_value_set_of_1200_listed_codes_and_two_systems(
        tx: httpx.AsyncClient, coded: dict[str, tuple[str, str] | None]) -> None:
    listed = set(LIST_CODES)
    expected = where(coded, lambda c: c is not None and (
        (c[0] == ICD and c[1] in listed) or (c[0] == LOCAL and c[1] in ("P", "P1", "P2"))))
    assert len([c for c in coded.values() if c and c[0] == ICD and c[1] in listed]) >= 3
    assert await found(tx, {"code:in": "urn:test:vs:big-list"}) == expected
    assert await found(tx, {"code:in": "ValueSet/big-list"}) == expected
    everything = set(coded)
    assert await found(tx, {"code:not-in": "urn:test:vs:big-list"}) == everything - expected


async def test_in_an_is_a_value_set_and_or_of_two(
        tx: httpx.AsyncClient, coded: dict[str, tuple[str, str] | None]) -> None:
    assert len(cm.get_descendants("S70-S79")) > 1000
    hips = where(coded, lambda c: c is not None and c[0] == ICD and below("S70-S79", c[1]))
    assert len(hips) >= 5
    assert await found(tx, {"code:in": "urn:test:vs:hips"}) == hips
    both = await found(tx, {"code:in": "urn:test:vs:hips,urn:test:vs:big-list"})
    assert both == hips | await found(tx, {"code:in": "urn:test:vs:big-list"})


async def test_below_and_above(tx: httpx.AsyncClient,
                               coded: dict[str, tuple[str, str] | None]) -> None:
    for ancestor in ("E08-E13", "E11", "S70-S79", "4"):
        expected = where(coded, lambda c, a=ancestor: c is not None and c[0] == ICD
                         and below(a, c[1]))
        assert await found(tx, {"code:below": f"{ICD}|{ancestor}"}) == expected, ancestor
    above = {"E11.65", *cm.get_ancestors("E11.65")}
    expected = where(coded, lambda c: c is not None and c[0] == ICD and c[1] in above)
    assert {c[1] for i, c in coded.items() if i in expected and c} == above
    assert await found(tx, {"code:above": f"{ICD}|E11.65"}) == expected
    local = where(coded, lambda c: c is not None and c[0] == LOCAL and c[1] in ("P", "P1", "P2"))
    assert await found(tx, {"code:below": f"{LOCAL}|P"}) == local


async def test_an_edited_value_set_is_searched_as_edited(
        tx: httpx.AsyncClient, coded: dict[str, tuple[str, str] | None]) -> None:
    await tx.put("ValueSet/edited", json={
        "resourceType": "ValueSet", "id": "edited", "url": "urn:test:vs:edited",
        "status": "active", "compose": {"include": [{"system": ICD, "concept": [
            {"code": "E11.65"}]}]}})
    first = await found(tx, {"code:in": "urn:test:vs:edited"})
    assert first == where(coded, lambda c: c == (ICD, "E11.65"))
    await tx.put("ValueSet/edited", json={
        "resourceType": "ValueSet", "id": "edited", "url": "urn:test:vs:edited",
        "status": "active", "compose": {"include": [{"system": ICD, "concept": [
            {"code": "I10"}]}]}})
    assert await found(tx, {"code:in": "urn:test:vs:edited"}) == \
        where(coded, lambda c: c == (ICD, "I10"))


async def test_a_scope_restricted_by_a_value_set(
        term_app: FastAPI, coded: dict[str, tuple[str, str] | None]) -> None:
    token = await mint(term_app, "system/Condition.rs?code:in=urn:test:vs:hips",
                       client_id="hips-only")
    hips = where(coded, lambda c: c is not None and c[0] == ICD and below("S70-S79", c[1]))
    async with fhir_client(term_app, token) as http:
        assert await found(http, {}) == hips
        outside = next(i for i, c in coded.items() if c == (ICD, "I10"))
        assert (await http.get(f"Condition/{outside}")).status_code == 404
        inside = next(iter(hips))
        assert (await http.get(f"Condition/{inside}")).status_code == 200


async def test_bad_modifier_values_are_400(tx: httpx.AsyncClient,
                                           coded: dict[str, tuple[str, str] | None]) -> None:
    for criteria in ({"code:in": "urn:test:vs:none"}, {"code:below": "E11"},
                     {"code:below": "urn:nowhere|E11"}, {"code:above": f"{ICD}|"},
                     {"code:in": "http://hl7.org/fhir/ValueSet/procedure-code"}):
        r = await tx.get("Condition", params=criteria)
        assert r.status_code == 400, (criteria, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
