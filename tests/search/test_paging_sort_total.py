"""Result control: _count and paging links, _sort, _total, _summary, _elements."""

from __future__ import annotations

import itertools
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.factories import patient
from tests.search.data import Loaded, entries, entry_ids, link_url, search, search_pages, store
from tests.search.expect import date_range, get, select, token_match, tokens

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


async def test_default_count_and_complete_paging(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    first = await search(syn.client, "Encounter")
    assert len(entry_ids(first)) == 20  # the default page size
    pages = await search_pages(syn.client, "Encounter", {"_count": "100"})
    seen: list[str] = []
    for i, page in enumerate(pages):
        assert page["type"] == "searchset"
        ids = entry_ids(page)
        assert len(ids) == (100 if i < len(pages) - 1 else len(encs) - 100 * (len(pages) - 1))
        assert link_url(page, "self") is not None
        seen.extend(ids)
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert set(seen) == set(encs)
    assert len(pages) == -(-len(encs) // 100)
    assert link_url(pages[-1], "next") is None


async def test_previous_link_and_self_link(syn: Loaded) -> None:
    params = {"class": "AMB", "_count": "50"}
    page1 = await search(syn.client, "Encounter", params)
    self_query = query_of(link_url(page1, "self") or "")
    assert ("class", "AMB") in self_query and ("_count", "50") in self_query
    page2 = await search(syn.client, link_url(page1, "next") or "")
    back = await search(syn.client, link_url(page2, "previous") or "")
    assert entry_ids(back) == entry_ids(page1)
    assert not set(entry_ids(page1)) & set(entry_ids(page2))


async def test_paging_stable_while_unrelated_resources_are_created(client: httpx.AsyncClient) -> None:
    data = {"Patient": {f"f{i:02d}": patient(id_=f"f{i:02d}", gender="female", family=f"Fam{i}")
                        for i in range(25)}}
    data["Patient"].update({f"m{i}": patient(id_=f"m{i}", gender="male") for i in range(5)})
    await store(client, data)
    expected = select(data["Patient"], lambda p: p["gender"] == "female")
    page = await search(client, "Patient", {"gender": "female", "_count": "6"})
    seen = entry_ids(page)
    n = 0
    while (nxt := link_url(page, "next")) is not None:
        # unrelated writes between page fetches: a non-matching Patient and another type
        resp = await client.post("Patient", json=patient(gender="male", family=f"Late{n}"))
        assert resp.status_code == 201
        resp = await client.post("Organization", json={"resourceType": "Organization", "name": f"O{n}"})
        assert resp.status_code == 201
        n += 1
        page = await search(client, nxt)
        seen.extend(entry_ids(page))
    assert n == 4
    assert len(seen) == len(set(seen)), "a match appeared on two pages"
    assert set(seen) == expected


async def test_paging_stable_when_a_page_resource_is_updated(client: httpx.AsyncClient) -> None:
    """Updating an already-returned match (it still matches) must not shift later pages."""
    data = {"Patient": {f"p{i:02d}": patient(id_=f"p{i:02d}", family="Same") for i in range(12)}}
    await store(client, data)
    page = await search(client, "Patient", {"family": "same", "_count": "5"})
    seen = entry_ids(page)
    while (nxt := link_url(page, "next")) is not None:
        touched = entries(page)[0]
        body = {k: v for k, v in touched.items() if k != "meta"}
        assert (await client.put(f"Patient/{touched['id']}", json=body)).status_code == 200
        page = await search(client, nxt)
        seen.extend(entry_ids(page))
    assert len(seen) == len(set(seen)) and set(seen) == set(data["Patient"])


async def test_sort_several_keys(syn: Loaded) -> None:
    pats = list(syn.data["Patient"].values())
    # birthdate ascending, then _id descending for equal birth dates
    by_id_desc = sorted(pats, key=lambda p: p["id"], reverse=True)
    expected = [p["id"] for p in sorted(by_id_desc, key=lambda p: p["birthDate"])]
    assert len({p["birthDate"] for p in pats}) < len(pats)  # premise: ties exist, -_id decides
    bundle = await search(syn.client, "Patient", {"_sort": "birthdate,-_id"})
    assert entry_ids(bundle) == expected
    expected = [p["id"] for p in sorted(sorted(pats, key=lambda p: p["id"]),
                                        key=lambda p: p["birthDate"], reverse=True)]
    bundle = await search(syn.client, "Patient", {"_sort": "-birthdate,_id"})
    assert entry_ids(bundle) == expected


async def test_sort_across_pages(syn: Loaded) -> None:
    pats = list(syn.data["Patient"].values())
    expected = [p["id"] for p in sorted(pats, key=lambda p: p["id"], reverse=True)]
    pages = await search_pages(syn.client, "Patient", {"_sort": "-_id", "_count": "4"})
    assert len(pages) == 4
    assert [i for page in pages for i in entry_ids(page)] == expected


async def test_sort_on_string_and_date(syn: Loaded) -> None:
    prs = list(syn.data["Practitioner"].values())
    expected = [p["id"] for p in sorted(sorted(prs, key=lambda p: p["id"]),
                                        key=lambda p: p["name"][0]["family"].casefold())]
    # premise: case does not change the order here
    assert expected == [p["id"] for p in sorted(sorted(prs, key=lambda p: p["id"]),
                                                 key=lambda p: p["name"][0]["family"])]
    bundle = await search(syn.client, "Practitioner", {"_sort": "family,_id", "_count": "100"})
    assert entry_ids(bundle) == expected
    # Encounters of one patient by date, descending: their periods do not overlap
    pid = "Patient/63ee2253-bdd5-da55-2ad2-b4984d0ad700"
    encs = [e for e in syn.data["Encounter"].values() if e["subject"]["reference"] == pid]
    spans = sorted((date_range(e["period"]["start"])[0], date_range(e["period"]["end"])[1])
                   for e in encs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    expected = [e["id"] for e in sorted(encs, key=lambda e: date_range(e["period"]["start"])[0],
                                        reverse=True)]
    bundle = await search(syn.client, "Encounter", {"subject": pid, "_sort": "-date"})
    assert entry_ids(bundle) == expected


async def test_sort_on_one_parameter_alone(client: httpx.AsyncClient) -> None:
    """No criteria narrow it: a missing value sorts first ascending and last descending, and
    equal values are ordered by id in the direction of the sort (across pages too)."""
    births = ["1980-05-01", "1975-01-31", "1980-05-01", None, "2001-12-24", None, "1975-01-31"]
    made = []
    for born in births:
        resource = patient(family="Sorted")
        resource.pop("birthDate", None)
        if born:
            resource["birthDate"] = born
        made.append((born, (await client.post("Patient", json=resource)).json()["id"]))
    with_value = [m for m in made if m[0]]
    missing = sorted(i for b, i in made if not b)
    ascending = missing + [i for _, i in sorted(with_value)]
    descending = [i for _, i in sorted(with_value, reverse=True)] + missing[::-1]
    for sort, expected in (("birthdate", ascending), ("-birthdate", descending)):
        pages = await search_pages(client, "Patient", {"_sort": sort, "_count": "3"})
        assert [i for page in pages for i in entry_ids(page)] == expected, sort


async def test_total_modes(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    amb = select(encs, lambda e: token_match(tokens(e["class"], "Coding"), "AMB"))
    none = await search(syn.client, "Encounter", {"class": "AMB", "_total": "none", "_count": "5"})
    assert "total" not in none
    assert len(entry_ids(none)) == 5
    accurate = await search(syn.client, "Encounter", {"class": "AMB", "_total": "accurate",
                                                      "_count": "5"})
    assert accurate["total"] == len(amb)
    estimate = await search(syn.client, "Encounter", {"class": "AMB", "_total": "estimate",
                                                      "_count": "5"})
    assert len(entry_ids(estimate)) == 5
    if "total" in estimate:
        assert isinstance(estimate["total"], int) and estimate["total"] >= 0


async def test_summary_count(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    emer = select(encs, lambda e: token_match(tokens(e["class"], "Coding"), "EMER"))
    bundle = await search(syn.client, "Encounter", {"class": "EMER", "_summary": "count"})
    assert bundle["total"] == len(emer)
    assert not bundle.get("entry")


async def test_summary_true(syn: Loaded) -> None:
    # Patient summary elements (isSummary in the R4 Patient definition) present in this data
    summary = {"identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedDateTime",
               "deceasedBoolean", "address", "managingOrganization", "link"}
    pats = syn.data["Patient"]
    bundle = await search(syn.client, "Patient", {"_summary": "true"})
    got = entries(bundle)
    assert {p["id"] for p in got} == set(pats)
    for res in got:
        raw = pats[res["id"]]
        expected_keys = {"resourceType", "id", "meta"} | (set(raw) & summary)
        assert set(res) == expected_keys, res["id"]
        for key in set(raw) & summary:
            assert res[key] == raw[key]
        assert SUBSETTED in [(t.get("system"), t.get("code")) for t in res["meta"].get("tag", [])]


async def test_elements(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    pages = await search_pages(syn.client, "Patient", {"_elements": "name,birthDate",
                                                       "_count": "5"})
    got = [r for page in pages for r in entries(page)]
    assert {r["id"] for r in got} == set(pats)
    for res in got:
        raw = pats[res["id"]]
        assert set(res) == {"resourceType", "id", "meta", "name", "birthDate"}, res["id"]
        assert res["name"] == raw["name"] and res["birthDate"] == raw["birthDate"]
        assert SUBSETTED in [(t.get("system"), t.get("code")) for t in res["meta"].get("tag", [])]
        # the profile in meta is kept
        assert get(res, "meta.profile") == get(raw, "meta.profile")
    assert len(pages) == 3


async def test_count_bounds(syn: Loaded) -> None:
    bundle = await search(syn.client, "Encounter", {"_count": "1"})
    assert len(entry_ids(bundle)) == 1
    nxt = link_url(bundle, "next")
    assert nxt is not None and ("_count", "1") in query_of(nxt)
