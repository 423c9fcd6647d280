"""A ValueSet ``regex`` filter cannot freeze a worker: patterns are matched by RE2 (linear
time), capped in length, and each expansion is time-bounded (422 beyond it), on every
engine, through ``$expand``, ``ValueSet/$validate-code`` and a search's ``:in``."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import simple_icd_10_cm as cm

from fhir_server.main import create_app
from tests.support.store import ClientFor, Store, fhir_client, make_settings, mint
from tests.support.terminology import ICD, params

CS_URL = "urn:test:cs:regex"
VS_URL = "urn:test:vs:regex"
# A backtracking engine needs about 2**n steps to find that "(a+)+" does not match the whole
# of "a" * n + "b": seconds for the displays below (so that, before RE2, this test failed
# rather than hung), hours for 40.
A_RUN = 26
LONG = 20_000  # a long display that matches
NESTED = "(a+)+"
SAME_LANGUAGE = "a+"  # what NESTED matches, spelled so that this test's own re is quick
LIMIT_DEFAULT = 256  # FHIR_TERMINOLOGY_REGEX_MAX_LENGTH's default
MANY = 6000  # concepts of the code system the time bound is shown on


def code_system(id_: str, url: str, displays: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "id": id_, "url": url, "status": "active",
            "content": "complete",
            "concept": [{"code": c, "display": d} for c, d in displays.items()]}


def value_set(id_: str, url: str, system: str, *filters: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": id_, "url": url, "status": "active",
            "compose": {"include": [{"system": system, "filter": list(filters)}]}}


def display_regex(pattern: str) -> dict[str, str]:
    return {"property": "display", "op": "regex", "value": pattern}


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion.get("contains", [])]


AS: dict[str, str] = {f"a{n}": "a" * (A_RUN - n) + ("b" if n % 2 else "") for n in range(8)}
AS["long"] = "a" * LONG


async def put_as(client: httpx.AsyncClient) -> None:
    assert (await client.put("CodeSystem/as", json=code_system("as", CS_URL, AS))).status_code == 201


async def test_nested_quantifier_answers_at_once_with_the_right_codes(
        client: httpx.AsyncClient, client_for: ClientFor) -> None:
    await put_as(client)
    vs = value_set("as-nested", VS_URL, CS_URL, display_regex(NESTED))
    assert (await client.put("ValueSet/as-nested", json=vs)).status_code == 201
    expected = [c for c, d in AS.items() if re.fullmatch(SAME_LANGUAGE, d)]
    assert expected and len(expected) < len(AS)
    # The code system is indexed at its first use: not part of what is timed.
    warm = await client.post("ValueSet/$expand", json=value_set("w", "urn:w", CS_URL))
    assert warm.json()["expansion"]["total"] == len(AS)
    # What the review did: a read-only patient token posts the value set.
    patient = await client_for("patient/*.rs", patient="p1")
    started = time.monotonic()
    r = await patient.post("ValueSet/$expand", json=vs)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert codes(r.json()["expansion"]) == expected
    assert elapsed < 1.0, elapsed

    refused = next(c for c, d in AS.items() if not re.fullmatch(SAME_LANGUAGE, d))
    for code, member in ((expected[0], True), (refused, False)):
        r = await client.get("ValueSet/$validate-code",
                             params={"url": VS_URL, "system": CS_URL, "code": code})
        assert r.status_code == 200, r.text
        assert params(r.json())["result"] == [member]

    made = {}
    for code in AS:
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": CS_URL, "code": code}]}}
        made[(await client.post("Observation", json=obs)).json()["id"]] = code
    r = await client.get("Observation", params={"code:in": VS_URL, "_count": 100})
    assert r.status_code == 200, r.text
    found = {e["resource"]["id"] for e in r.json().get("entry", [])}
    assert found == {id_ for id_, code in made.items() if code in expected}


async def test_a_pattern_longer_than_the_limit_is_refused_naming_it(
        client: httpx.AsyncClient) -> None:
    await put_as(client)
    for pattern in ("a" * (LIMIT_DEFAULT + 1), "x|" * LIMIT_DEFAULT):
        r = await client.post("ValueSet/$expand", json=value_set(
            "long", "urn:long", CS_URL, {"property": "concept", "op": "regex", "value": pattern}))
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert str(LIMIT_DEFAULT) in issue["diagnostics"]
        assert str(len(pattern)) in issue["diagnostics"]
        assert issue["expression"] == ["ValueSet.compose.include[0].filter[0].value"]
    # Exactly at the limit is a pattern like any other.
    at_limit = "a" * (LIMIT_DEFAULT - 2) + ".*"
    r = await client.post("ValueSet/$expand", json=value_set(
        "edge", "urn:edge", CS_URL, display_regex(at_limit)))
    assert r.status_code == 200, r.text
    assert codes(r.json()["expansion"]) == [c for c, d in AS.items() if re.fullmatch(at_limit, d)]


async def test_what_only_a_backtracking_engine_runs_is_refused(client: httpx.AsyncClient) -> None:
    await put_as(client)
    for pattern in (r"(a)\1", "(?=a)a", "(?<!b)a", "a{1001}", "("):
        r = await client.post("ValueSet/$expand", json=value_set(
            "bad", "urn:bad", CS_URL, display_regex(pattern)))
        assert r.status_code == 400, (pattern, r.text)
        issue = r.json()["issue"][0]
        assert issue["expression"] == ["ValueSet.compose.include[0].filter[0].value"]
        assert "RE2" in issue["diagnostics"]


def many_displays() -> dict[str, str]:
    return {f"m{n}": f"{'ab' * (n % 40)}c {n}" for n in range(MANY)}


async def test_an_expansion_past_the_time_bound_answers_422_and_stores_nothing(
        store: Store, client: httpx.AsyncClient) -> None:
    displays = many_displays()
    put = await client.put("CodeSystem/many", json=code_system("many", "urn:test:cs:many",
                                                                displays))
    assert put.status_code == 201, put.text
    pattern = "(ab)*c [0-9]*7"
    vs = value_set("many-vs", "urn:test:vs:many", "urn:test:cs:many", display_regex(pattern))
    assert (await client.put("ValueSet/many-vs", json=vs)).status_code == 201
    expected = [c for c, d in displays.items() if re.fullmatch(pattern, d)]
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "urn:test:cs:many", "code": expected[0]}]}}
    obs_id = (await client.post("Observation", json=obs)).json()["id"]
    # The same store served by a process whose bound is far shorter than the scan.
    hurried = create_app(make_settings(store, fhir_terminology_expansion_timeout=0.001))
    async with hurried.router.lifespan_context(hurried), \
            fhir_client(hurried, await mint(hurried)) as rushed:
        r = await rushed.get("ValueSet/many-vs/$expand", params={"count": 10})
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "too-costly" and "0.001 s" in issue["diagnostics"]
        r = await rushed.get("Observation", params={"code:in": "urn:test:vs:many"})
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == ["code"]
    # Within the default bound the same expansion and search answer in full: the stopped
    # search left no partial code set behind.
    r = await client.get("ValueSet/many-vs/$expand", params={"count": 10})
    assert r.status_code == 200, r.text
    assert r.json()["expansion"]["total"] == len(expected)
    assert codes(r.json()["expansion"]) == expected[:10]
    r = await client.get("Observation", params={"code:in": "urn:test:vs:many"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [obs_id]


async def test_nested_quantifier_over_icd10cm_descriptions(tx: httpx.AsyncClient) -> None:
    """A pattern a backtracking engine takes about a second per description to refuse
    (every split of the letters before the first digit or comma into words), over all
    98,505 ICD-10-CM descriptions, within the default time bound."""
    nested = "([A-Za-z]+ ?)+"
    same_language = "[A-Za-z]+( [A-Za-z]+)* ?"  # one way to read each value: quick for re
    names = cm.get_all_codes(True)
    expected = [n for n in names if re.fullmatch(same_language, cm.get_description(n))]
    assert 0 < len(expected) < len(names)
    vs = value_set("icd-nested", "urn:test:vs:icd-nested", ICD, display_regex(nested))
    r = await tx.post("ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": vs}, {"name": "count", "valueInteger": 20}]})
    assert r.status_code == 200, r.text
    assert r.json()["expansion"]["total"] == len(expected)
    assert [c["display"] for c in r.json()["expansion"]["contains"]] == \
        [cm.get_description(n) for n in expected[:20]]
