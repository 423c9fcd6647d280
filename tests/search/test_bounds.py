"""Bounds on a search parameter: too many values, too long a chain, _has nested too deep
are a 400 that names the limit (they were 500s: the query outgrew the engine)."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.search.parse import MAX_CHAIN, MAX_HAS_NESTING, MAX_VALUES


def chain(links: int) -> str:
    return "subject:Patient" + ".link:Patient" * (links - 1) + ".name"


def has(nesting: int) -> str:
    return "_has:Observation:subject:" * nesting + "code"


@pytest.mark.parametrize(("type_", "name", "value", "said"), [
    ("Patient", "family", ",".join(f"n{i}" for i in range(MAX_VALUES + 1)),
     f"at most {MAX_VALUES} values"),
    ("Observation", chain(MAX_CHAIN + 1), "x", f"{MAX_CHAIN} references at most"),
    ("Patient", has(MAX_HAS_NESTING + 1), "x", f"nested {MAX_HAS_NESTING} deep at most"),
])
async def test_beyond_a_bound_is_a_400_naming_it(client: httpx.AsyncClient, type_: str,
                                                 name: str, value: str, said: str) -> None:
    for headers in ({}, {"Prefer": "handling=lenient"}):  # a bound is no unknown parameter
        r = await client.get(type_, params={name: value}, headers=headers)
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert said in issue["diagnostics"] and issue["expression"] == [name]


async def test_up_to_each_bound_is_searched(client: httpx.AsyncClient) -> None:
    family = await client.post("Patient", json={"resourceType": "Patient",
                                                "name": [{"family": f"n{MAX_VALUES - 1}"}]})
    assert family.status_code == 201
    found = await client.get("Patient", params={
        "family": ",".join(f"n{i}" for i in range(MAX_VALUES))})
    assert found.status_code == 200 and found.json()["total"] == 1
    for type_, name in (("Observation", chain(MAX_CHAIN)), ("Patient", has(MAX_HAS_NESTING))):
        r = await client.get(type_, params={name: "x"})
        assert r.status_code == 200 and r.json()["total"] == 0, r.text
