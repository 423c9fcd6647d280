"""Reference search: Type/id, id, absolute URL, :Type, :identifier, OR."""

from __future__ import annotations

import httpx

from tests.search.data import Loaded, search, search_ids, store
from tests.search.expect import get, refs, select

BASE = "http://testserver/fhir"


def _patient_with_fewest_encounters(syn: Loaded) -> str:
    counts: dict[str, int] = {}
    for e in syn.data["Encounter"].values():
        counts[e["subject"]["reference"]] = counts.get(e["subject"]["reference"], 0) + 1
    return min(counts, key=lambda k: counts[k]).split("/")[1]


async def test_subject_forms(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    pid = _patient_with_fewest_encounters(syn)
    expected = select(encs, lambda e: f"Patient/{pid}" in refs(e, "subject"))
    assert 0 < len(expected) < len(encs)
    for params in ({"subject": f"Patient/{pid}"}, {"subject": pid},
                   {"subject": f"{BASE}/Patient/{pid}"}, {"subject:Patient": pid},
                   {"patient": pid}, {"patient": f"Patient/{pid}"}):
        got = await search_ids(syn.client, "Encounter", {**params, "_count": "200"})
        assert got == expected, params


async def test_type_modifier_excludes_other_types(syn: Loaded) -> None:
    pid = _patient_with_fewest_encounters(syn)
    # the subject of an Encounter may be a Patient or a Group; these Encounters point at Patients
    assert await search_ids(syn.client, "Encounter", {"subject:Group": pid}) == set()
    assert await search_ids(syn.client, "Encounter", {"subject": f"Group/{pid}"}) == set()


async def test_other_reference_parameters(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    some = sorted(encs.values(), key=lambda e: e["id"])[7]
    org = some["serviceProvider"]["reference"]
    practitioner = get(some, "participant.individual.reference")[0]
    location = get(some, "location.location.reference")[0]
    cases = [
        ("service-provider", org, lambda e: org in refs(e, "serviceProvider")),
        ("participant", practitioner, lambda e: practitioner in refs(e, "participant.individual")),
        ("practitioner", practitioner.split("/")[1],
         lambda e: practitioner in refs(e, "participant.individual")),
        ("location", location, lambda e: location in refs(e, "location.location")),
    ]
    for name, value, pred in cases:
        expected = select(encs, pred)
        assert 0 < len(expected) < len(encs), name
        got = await search_ids(syn.client, "Encounter", {name: value, "_count": "1000"})
        assert got == expected, name


async def test_reference_or(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    counts: dict[str, int] = {}
    for e in encs.values():
        counts[e["subject"]["reference"]] = counts.get(e["subject"]["reference"], 0) + 1
    two = sorted(counts, key=lambda k: counts[k])[:2]
    expected = select(encs, lambda e: bool(set(refs(e, "subject")) & set(two)))
    got = await search_ids(syn.client, "Encounter", {"subject": ",".join(two), "_count": "200"})
    assert got == expected
    # AND of two different subjects matches nothing (each Encounter has one subject)
    assert await search_ids(syn.client, "Encounter", [("subject", two[0]), ("subject", two[1])]) == set()


async def test_identifier_modifier(syn: Loaded) -> None:
    """Location.managingOrganization carries only an identifier in this data set."""
    locs = syn.data["Location"]
    ident = next(get(loc, "managingOrganization.identifier")[0] for loc in locs.values()
                 if "managingOrganization" in loc)
    query = f"{ident['system']}|{ident['value']}"

    def ok(loc: dict) -> bool:
        return any(i.get("system") == ident["system"] and i.get("value") == ident["value"]
                   for i in get(loc, "managingOrganization.identifier"))

    expected = select(locs, ok)
    assert len(expected) >= 1
    assert await search_ids(syn.client, "Location", {"organization:identifier": query}) == expected
    # a literal-reference search does not match identifier-only references
    assert await search_ids(syn.client, "Location",
                            {"organization": f"Organization/{ident['value']}"}) == set()


async def test_examples_group_and_patient_subjects(ex: Loaded) -> None:
    obs = ex.data["Observation"]
    expected = select(obs, lambda o: "Group/herd1" in refs(o, "subject"))
    assert expected
    assert await search_ids(ex.client, "Observation", {"subject": "Group/herd1"}) == expected
    assert await search_ids(ex.client, "Observation", {"subject:Group": "herd1"}) == expected
    # 'patient' only covers subjects that are Patients
    assert await search_ids(ex.client, "Observation", {"patient": "Group/herd1"}) == set()
    expected = select(obs, lambda o: "Patient/f001" in refs(o, "subject"))
    assert await search_ids(ex.client, "Observation", {"patient": "f001"}) == expected
    # a contained reference (#newborn) is not a reference to a Patient with id newborn
    assert await search_ids(ex.client, "Observation", {"subject": "Patient/newborn"}) == set()


async def test_absolute_and_versioned_references_in_data(client: httpx.AsyncClient) -> None:
    """A reference stored as an absolute URL on this server is found by Type/id, and vice versa."""
    data = {"Observation": {
        "abs": {"resourceType": "Observation", "id": "abs", "status": "final", "code": {"text": "x"},
                "subject": {"reference": f"{BASE}/Patient/p1"}},
        "rel": {"resourceType": "Observation", "id": "rel", "status": "final", "code": {"text": "x"},
                "subject": {"reference": "Patient/p1"}},
        "other": {"resourceType": "Observation", "id": "other", "status": "final",
                  "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}},
        "foreign": {"resourceType": "Observation", "id": "foreign", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "http://elsewhere.org/fhir/Patient/p1"}},
    }}
    await store(client, data)
    expected = select(data["Observation"], lambda o: "Patient/p1" in refs(o, "subject"))
    assert expected == {"abs", "rel"}
    assert await search_ids(client, "Observation", {"subject": "Patient/p1"}) == expected
    assert await search_ids(client, "Observation", {"subject": f"{BASE}/Patient/p1"}) == expected
    # a reference to another server is matched by its full URL
    foreign = await search_ids(client, "Observation",
                               {"subject": "http://elsewhere.org/fhir/Patient/p1"})
    assert foreign == {"foreign"}


async def test_unknown_target_matches_nothing(syn: Loaded) -> None:
    bundle = await search(syn.client, "Encounter", {"subject": "Patient/does-not-exist"})
    assert bundle.get("entry", []) == []
