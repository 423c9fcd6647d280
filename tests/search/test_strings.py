"""String search: case- and accent-insensitive starts-with, :exact, :contains."""

from __future__ import annotations

import httpx

from tests.search.data import Loaded, search_ids, store
from tests.search.expect import address_parts, any_string, get, human_name_parts, select


def names(p: dict) -> list[str]:
    return [part for n in p.get("name", []) for part in human_name_parts(n)]


def addresses(p: dict) -> list[str]:
    return [part for a in p.get("address", []) for part in address_parts(a)]


def _pat(id_: str, *names: dict, address: list | None = None) -> dict:
    res: dict = {"resourceType": "Patient", "id": id_}
    if names:
        res["name"] = list(names)
    if address:
        res["address"] = address
    return res


ACCENTED = {"Patient": {p["id"]: p for p in [
    _pat("mueller-1", {"family": "Müller", "given": ["Jürgen"]}),
    _pat("mueller-2", {"family": "MÜLLER-Lüdenscheidt"}),
    _pat("mueller-3", {"family": "Mueller", "given": ["Hans"]}),
    _pat("muller-4", {"family": "muller", "given": ["Zoë"]}),
    _pat("gomez", {"family": "Gómez", "given": ["José", "Ángel"]},
         address=[{"line": ["Calle Mayor 1"], "city": "Málaga", "country": "España"}]),
    _pat("gomezz", {"family": "Gomezz"}, address=[{"city": "Malaga Beach"}]),
    _pat("text-only", {"text": "Ångström Erik"}),
    _pat("noname"),
]}}


async def test_default_is_case_and_accent_insensitive_prefix(client: httpx.AsyncClient) -> None:
    await store(client, ACCENTED)
    pats = ACCENTED["Patient"]
    for query in ("muller", "MULLER", "Müll", "mü", "gomez", "GÓMEZ", "jose", "angel", "ZOE",
                  "angstrom", "erik", "ller"):
        expected = select(pats, lambda p, q=query: any_string(names(p), q))
        got = await search_ids(client, "Patient", {"name": query})
        assert got == expected, query
    # the premises: folding matters, and it is a prefix match, not a substring match
    assert select(pats, lambda p: any_string(names(p), "muller")) == {"mueller-1", "mueller-2",
                                                                      "muller-4"}
    assert select(pats, lambda p: any_string(names(p), "ller")) == set()


async def test_family_and_given(client: httpx.AsyncClient) -> None:
    await store(client, ACCENTED)
    pats = ACCENTED["Patient"]
    expected = select(pats, lambda p: any_string(get(p, "name.family"), "gomez"))
    assert expected == {"gomez", "gomezz"}
    assert await search_ids(client, "Patient", {"family": "gomez"}) == expected
    expected = select(pats, lambda p: any_string(get(p, "name.given"), "j"))
    assert expected == {"mueller-1", "gomez"}
    assert await search_ids(client, "Patient", {"given": "j"}) == expected
    # family does not search given names
    assert await search_ids(client, "Patient", {"family": "jose"}) == set()


async def test_exact_modifier(client: httpx.AsyncClient) -> None:
    await store(client, ACCENTED)
    pats = ACCENTED["Patient"]
    for query in ("Müller", "muller", "Muller", "Gómez", "Gomez", "Gó"):
        expected = select(pats, lambda p, q=query: any_string(get(p, "name.family"), q, "exact"))
        assert await search_ids(client, "Patient", {"family:exact": query}) == expected, query
    assert select(pats, lambda p: any_string(get(p, "name.family"), "Müller", "exact")) == {"mueller-1"}


async def test_contains_modifier(client: httpx.AsyncClient) -> None:
    await store(client, ACCENTED)
    pats = ACCENTED["Patient"]
    for query in ("ller", "LÜD", "omez", "ström", "xyz"):
        expected = select(pats, lambda p, q=query: any_string(names(p), q, "contains"))
        assert await search_ids(client, "Patient", {"name:contains": query}) == expected, query
    assert select(pats, lambda p: any_string(names(p), "ller", "contains")) == {
        "mueller-1", "mueller-2", "mueller-3", "muller-4"}


async def test_address_parts(client: httpx.AsyncClient) -> None:
    await store(client, ACCENTED)
    pats = ACCENTED["Patient"]
    expected = select(pats, lambda p: any_string(addresses(p), "malaga"))
    assert expected == {"gomez", "gomezz"}
    assert await search_ids(client, "Patient", {"address": "malaga"}) == expected
    assert await search_ids(client, "Patient", {"address": "calle"}) == {"gomez"}
    expected = select(pats, lambda p: any_string(get(p, "address.country"), "espana"))
    assert await search_ids(client, "Patient", {"address-country": "espana"}) == expected == {"gomez"}


async def test_synthea_names_and_addresses(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    for params, pred in [
        ({"name": "sch"}, lambda p: any_string(names(p), "sch")),
        ({"family": "CUMMERATA"}, lambda p: any_string(get(p, "name.family"), "CUMMERATA")),
        ({"given": "sumiko254"}, lambda p: any_string(get(p, "name.given"), "sumiko254")),
        ({"name": "mrs"}, lambda p: any_string(names(p), "mrs")),
        ({"address-city": "emp"}, lambda p: any_string(get(p, "address.city"), "emp")),
        ({"address-postalcode": "668"}, lambda p: any_string(get(p, "address.postalCode"), "668")),
        ({"address-state": "kansas"}, lambda p: any_string(get(p, "address.state"), "kansas")),
        ({"address": "ks"}, lambda p: any_string(addresses(p), "ks")),
    ]:
        expected = select(pats, pred)
        assert await search_ids(syn.client, "Patient", params) == expected, params
    assert 1 < len(select(pats, lambda p: any_string(names(p), "sch"))) < len(pats)


async def test_string_or_and(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    expected = select(pats, lambda p: any_string(names(p), "schm") or any_string(names(p), "jast"))
    assert len(expected) == 2
    assert await search_ids(syn.client, "Patient", {"name": "schm,jast"}) == expected
    expected = select(pats, lambda p: any_string(get(p, "address.city"), "emporia")
                      and any_string(get(p, "name.given"), "elisa"))
    assert len(expected) == 1
    got = await search_ids(syn.client, "Patient", [("address-city", "emporia"), ("given", "elisa")])
    assert got == expected


async def test_organization_name_and_non_latin_text(syn: Loaded, ex: Loaded) -> None:
    orgs = syn.data["Organization"]
    expected = select(orgs, lambda o: any_string(get(o, "name"), "newman"))
    assert len(expected) > 1
    assert await search_ids(syn.client, "Organization", {"name": "newman"}) == expected
    pats = ex.data["Patient"]
    expected = select(pats, lambda p: any_string(names(p), "张"))
    assert len(expected) == 1
    assert await search_ids(ex.client, "Patient", {"name": "张"}) == expected
