"""Common parameters (_id, _lastUpdated, _tag, _profile, _security, _source); current versions only."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import patient
from tests.search.data import Loaded, search_ids, store
from tests.search.expect import date_range, date_search, get, select, token_match, tokens

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


async def test_id(syn: Loaded) -> None:
    encs = sorted(syn.data["Encounter"])
    wanted = [encs[3], encs[500], encs[1000]]
    assert await search_ids(syn.client, "Encounter", {"_id": ",".join(wanted)}) == set(wanted)
    assert await search_ids(syn.client, "Encounter", {"_id": wanted[1]}) == {wanted[1]}
    assert await search_ids(syn.client, "Encounter", {"_id": "no-such-id"}) == set()
    # _id combined with another criterion
    enc = syn.data["Encounter"][wanted[0]]
    other = "EMER" if enc["class"]["code"] != "EMER" else "AMB"
    assert await search_ids(syn.client, "Encounter", {"_id": wanted[0], "class": other}) == set()
    # the Patient with this id is not an Encounter
    pid = next(iter(syn.data["Patient"]))
    assert await search_ids(syn.client, "Encounter", {"_id": pid}) == set()


def _tags(r: dict, element: str) -> list:
    return [t for c in get(r, f"meta.{element}") for t in tokens(c, "Coding")]


async def test_tag(ex: Loaded) -> None:
    for rtype in ("PlanDefinition", "Measure", "Patient"):
        data = ex.data[rtype]
        for query in (f"{ACT_REASON}|HTEST", "HTEST", f"{ACT_REASON}|"):
            expected = select(data, lambda r, q=query: token_match(_tags(r, "tag"), q))
            assert await search_ids(ex.client, rtype, {"_tag": query}) == expected, (rtype, query)
    pd = ex.data["PlanDefinition"]
    assert 0 < len(select(pd, lambda r: token_match(_tags(r, "tag"), "HTEST"))) < len(pd)


async def test_security(ex: Loaded) -> None:
    data = ex.data["Condition"]
    query = "http://terminology.hl7.org/CodeSystem/v3-ActCode|TBOO"
    expected = select(data, lambda r: token_match(_tags(r, "security"), query))
    assert expected == {"f202"}
    assert await search_ids(ex.client, "Condition", {"_security": query}) == expected
    # a tag is not a security label
    assert await search_ids(ex.client, "Condition", {"_tag": query}) == set()


async def test_profile(ex: Loaded) -> None:
    for rtype, profile in (("Observation", "http://hl7.org/fhir/StructureDefinition/vitalsigns"),
                           ("ValueSet", "http://hl7.org/fhir/StructureDefinition/shareablevalueset")):
        data = ex.data[rtype]
        expected = select(data, lambda r, p=profile: p in get(r, "meta.profile"))
        assert 0 < len(expected) < len(data)
        assert await search_ids(ex.client, rtype, {"_profile": profile}) == expected


async def test_source_and_custom_tags(client: httpx.AsyncClient) -> None:
    def pat(id_: str, source: str | None, tag: str | None) -> dict:
        meta: dict = {}
        if source:
            meta["source"] = source
        if tag:
            meta["tag"] = [{"system": "urn:test:tags", "code": tag}]
        return {"resourceType": "Patient", "id": id_, **({"meta": meta} if meta else {})}

    data = {"Patient": {p["id"]: p for p in [
        pat("a", "http://lab.example.org/feed#1", "red"),
        pat("b", "http://lab.example.org/feed#2", "blue"),
        pat("c", "urn:uuid:0e2c2f3a-7c4d-4a3b-9f2d-2c2f3a7c4d4a", "red"),
        pat("d", None, None),
    ]}}
    await store(client, data)
    pats = data["Patient"]
    for source in ("http://lab.example.org/feed#1", "urn:uuid:0e2c2f3a-7c4d-4a3b-9f2d-2c2f3a7c4d4a"):
        expected = select(pats, lambda p, s=source: get(p, "meta.source") == [s])
        assert len(expected) == 1
        assert await search_ids(client, "Patient", {"_source": source}) == expected
    for query in ("urn:test:tags|red", "blue", "red,blue", "urn:test:tags|green"):
        expected = select(pats, lambda p, q=query: any(token_match(_tags(p, "tag"), x)
                                                       for x in q.split(",")))
        assert await search_ids(client, "Patient", {"_tag": query}) == expected, query


async def test_last_updated(client: httpx.AsyncClient) -> None:
    first, second = [], []
    for i in range(3):
        resp = await client.put(f"Patient/early-{i}", json=patient(id_=f"early-{i}"))
        first.append(resp.json())
    await asyncio.sleep(1.2)
    for i in range(3):
        resp = await client.put(f"Patient/late-{i}", json=patient(id_=f"late-{i}"))
        second.append(resp.json())
    everything = {r["id"]: r for r in first + second}
    last_early = max(first, key=lambda r: date_range(r["meta"]["lastUpdated"])[0])["meta"]["lastUpdated"]
    first_late = min(second, key=lambda r: date_range(r["meta"]["lastUpdated"])[0])["meta"]["lastUpdated"]
    assert date_range(last_early)[1] <= date_range(first_late)[0]

    for query in ("gt" + last_early, "ge" + first_late, "lt" + first_late, "le" + last_early):
        expected = select(everything, lambda r, q=query: date_search([r["meta"]["lastUpdated"]], q))
        assert len(expected) == 3, (query, expected)
        assert await search_ids(client, "Patient", {"_lastUpdated": query}) == expected, query
    # from the start of the (UTC) day of the first write: all of them
    earliest = min(date_range(r["meta"]["lastUpdated"])[0] for r in first)
    day = earliest.strftime("%Y-%m-%dT00:00:00Z")
    since_day = select(everything, lambda r: date_search([r["meta"]["lastUpdated"]], "ge" + day))
    assert since_day == set(everything)
    assert await search_ids(client, "Patient", {"_lastUpdated": "ge" + day}) == set(everything)


async def test_deleted_and_superseded_versions_never_match(client: httpx.AsyncClient) -> None:
    data = {"Patient": {f"z{i}": patient(id_=f"z{i}", family="Zedd", given=f"G{i}") for i in range(4)}}
    await store(client, data)
    assert (await client.delete("Patient/z1")).status_code in (200, 204)
    changed = {**data["Patient"]["z2"], "name": [{"family": "Quux", "given": ["G2"]}]}
    assert (await client.put("Patient/z2", json=changed)).status_code == 200
    current = {"z0": data["Patient"]["z0"], "z2": changed, "z3": data["Patient"]["z3"]}
    expected = select(current, lambda p: any(f.startswith("Zedd") for f in get(p, "name.family")))
    assert expected == {"z0", "z3"}
    assert await search_ids(client, "Patient", {"family": "zedd"}) == expected
    assert await search_ids(client, "Patient", {"family": "quux"}) == {"z2"}
    assert await search_ids(client, "Patient", {"_id": "z1"}) == set()
    assert await search_ids(client, "Patient", {"given": "g1"}) == set()
    # a resource re-created after deletion matches again
    assert (await client.put("Patient/z1", json=data["Patient"]["z1"])).status_code in (200, 201)
    assert await search_ids(client, "Patient", {"family": "zedd"}) == {"z0", "z1", "z3"}
