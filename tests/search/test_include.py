"""_include, _revinclude, :iterate and _include=*: search.mode match vs include."""

from __future__ import annotations

from tests.search.data import Loaded, entries, search, search_pages, typed_ids
from tests.search.expect import refs

P = "63ee2253-bdd5-da55-2ad2-b4984d0ad700"  # a patient with few encounters


def encounters_of(syn: Loaded, pid: str) -> dict[str, dict]:
    return {i: e for i, e in syn.data["Encounter"].items()
            if e["subject"]["reference"] == f"Patient/{pid}"}


def existing(syn: Loaded, targets: set[str]) -> set[str]:
    return {t for t in targets if t.split("/")[1] in syn.data.get(t.split("/")[0], {})}


def modes_ok(bundle: dict) -> None:
    for e in bundle.get("entry", []):
        assert e.get("search", {}).get("mode") in ("match", "include", "outcome"), e
    typed = typed_ids(bundle, None)
    assert len(typed) == len(set(typed)), "a resource appears twice in one page"


async def test_include_subject(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    for include in ("Encounter:subject", "Encounter:subject:Patient", "Encounter:patient"):
        bundle = await search(syn.client, "Encounter",
                              {"subject": f"Patient/{P}", "_include": include, "_count": "100"})
        modes_ok(bundle)
        assert set(typed_ids(bundle)) == {f"Encounter/{i}" for i in encs}, include
        assert set(typed_ids(bundle, "include")) == {f"Patient/{P}"}, include


async def test_include_with_wrong_target_type_includes_nothing(syn: Loaded) -> None:
    bundle = await search(syn.client, "Encounter", {"subject": f"Patient/{P}",
                                                    "_include": "Encounter:subject:Group"})
    assert typed_ids(bundle, "include") == []


async def test_several_includes(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    expected = existing(syn, {t for e in encs.values() for t in
                              refs(e, "serviceProvider") + refs(e, "participant.individual")})
    assert any(t.startswith("Organization/") for t in expected)
    assert any(t.startswith("Practitioner/") for t in expected)
    bundle = await search(syn.client, "Encounter", [
        ("subject", f"Patient/{P}"), ("_include", "Encounter:service-provider"),
        ("_include", "Encounter:participant"), ("_count", "100")])
    modes_ok(bundle)
    assert set(typed_ids(bundle, "include")) == expected
    # included resources are the stored resources
    for res in entries(bundle, "include"):
        raw = syn.data[res["resourceType"]][res["id"]]
        assert res["name"] == raw["name"]


async def test_include_wildcard(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    paths = ("subject", "participant.individual", "location.location", "serviceProvider",
             "partOf", "episodeOfCare", "basedOn", "appointment", "account",
             "diagnosis.condition", "reasonReference", "hospitalization.origin",
             "hospitalization.destination")
    expected = existing(syn, {t for e in encs.values() for t in refs(e, *paths)})
    assert {t.split("/")[0] for t in expected} == {"Patient", "Practitioner", "Location",
                                                   "Organization"}
    bundle = await search(syn.client, "Encounter",
                          {"subject": f"Patient/{P}", "_include": "*", "_count": "100"})
    modes_ok(bundle)
    assert set(typed_ids(bundle)) == {f"Encounter/{i}" for i in encs}
    assert set(typed_ids(bundle, "include")) == expected


async def test_revinclude(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    bundle = await search(syn.client, "Patient", {"_id": P, "_revinclude": "Encounter:subject"})
    modes_ok(bundle)
    assert typed_ids(bundle) == [f"Patient/{P}"]
    assert set(typed_ids(bundle, "include")) == {f"Encounter/{i}" for i in encs}


async def test_revinclude_for_several_matches(syn: Loaded) -> None:
    pats = sorted(syn.data["Patient"])
    small = [p for p in pats if 0 < len(encounters_of(syn, p)) <= 20][:3]
    assert len(small) == 3
    bundle = await search(syn.client, "Patient", {"_id": ",".join(small),
                                                  "_revinclude": "Encounter:patient"})
    modes_ok(bundle)
    assert set(typed_ids(bundle)) == {f"Patient/{p}" for p in small}
    expected = {f"Encounter/{i}" for p in small for i in encounters_of(syn, p)}
    assert set(typed_ids(bundle, "include")) == expected


async def test_iterate(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    orgs = existing(syn, {t for e in encs.values() for t in refs(e, "serviceProvider")})
    bundle = await search(syn.client, "Patient", {
        "_id": P, "_revinclude": "Encounter:subject",
        "_include:iterate": "Encounter:service-provider"})
    modes_ok(bundle)
    assert typed_ids(bundle) == [f"Patient/{P}"]
    assert set(typed_ids(bundle, "include")) == {f"Encounter/{i}" for i in encs} | orgs
    # without :iterate, Encounter:service-provider does not apply to Patient matches
    plain = await search(syn.client, "Patient", {
        "_id": P, "_revinclude": "Encounter:subject", "_include": "Encounter:service-provider"})
    assert set(typed_ids(plain, "include")) == {f"Encounter/{i}" for i in encs}


async def test_includes_follow_the_page(syn: Loaded) -> None:
    encs = encounters_of(syn, P)
    pages = await search_pages(syn.client, "Encounter", {
        "subject": f"Patient/{P}", "_include": "Encounter:service-provider", "_count": "4"})
    assert len(pages) == -(-len(encs) // 4)
    for page in pages:
        modes_ok(page)
        matched = [encs[r["id"]] for r in entries(page)]
        expected = existing(syn, {t for e in matched for t in refs(e, "serviceProvider")})
        assert set(typed_ids(page, "include")) == expected
