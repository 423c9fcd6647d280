"""Patient compartment search: GET [base]/Patient/[id]/[type]?..., per the CompartmentDefinition."""

from __future__ import annotations

import httpx

from tests.search.data import Loaded, compartment_definition, search, search_ids, store
from tests.search.expect import refs, select, token_match, tokens

# search parameter -> paths of the referencing elements (from the R4 definitions' expressions)
PARAM_PATHS = {
    ("Encounter", "subject"): ("subject",),
    ("Encounter", "patient"): ("subject",),
    ("Observation", "subject"): ("subject",),
    ("Observation", "performer"): ("performer",),
    ("Observation", "patient"): ("subject",),
    ("Condition", "patient"): ("subject",),
    ("Condition", "asserter"): ("asserter",),
}


def compartment_params(rtype: str) -> list[str]:
    for entry in compartment_definition()["resource"]:
        if entry["code"] == rtype:
            return list(entry.get("param", []))
    return []


def in_compartment(res: dict, pid: str) -> bool:
    rtype = res["resourceType"]
    params = compartment_params(rtype)
    assert params, f"premise: {rtype} is in the Patient compartment"
    return any(f"Patient/{pid}" in refs(res, *PARAM_PATHS[(rtype, p)]) for p in params)


async def test_encounter_compartment(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    for pid in sorted(syn.data["Patient"])[:4]:
        expected = select(encs, lambda e, p=pid: in_compartment(e, p))
        assert expected
        got = await search_ids(syn.client, f"Patient/{pid}/Encounter", {"_count": "1000"})
        assert got == expected, pid


async def test_compartment_with_criteria(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    pid = "79a66c97-6131-3213-f3c9-4606946ab056"  # many encounters of several classes
    expected = select(encs, lambda e: in_compartment(e, pid)
                      and token_match(tokens(e["class"], "Coding"), "EMER"))
    assert expected
    got = await search_ids(syn.client, f"Patient/{pid}/Encounter", {"class": "EMER"})
    assert got == expected
    date_limited = await search(syn.client, f"Patient/{pid}/Encounter",
                                {"_summary": "count", "class": "AMB"})
    assert date_limited["total"] == len(select(
        encs, lambda e: in_compartment(e, pid) and token_match(tokens(e["class"], "Coding"), "AMB")))


async def test_compartment_of_other_types(ex: Loaded) -> None:
    for rtype in ("Observation", "Condition"):
        data = ex.data[rtype]
        for pid in ("example", "f001", "f201"):
            expected = select(data, lambda r, p=pid: in_compartment(r, p))
            got = await search_ids(ex.client, f"Patient/{pid}/{rtype}")
            assert got == expected, (rtype, pid)


async def test_compartment_through_a_non_subject_parameter(client: httpx.AsyncClient) -> None:
    """Observation is in Patient b's compartment when b is its performer (CompartmentDefinition)."""
    def obs(id_: str, subject: str, performer: str | None) -> dict:
        res = {"resourceType": "Observation", "id": id_, "status": "final", "code": {"text": "x"},
               "subject": {"reference": subject}}
        if performer:
            res["performer"] = [{"reference": performer}]
        return res

    data = {"Observation": {o["id"]: o for o in [
        obs("o1", "Patient/a", "Patient/b"), obs("o2", "Patient/b", None),
        obs("o3", "Patient/a", "Practitioner/b"), obs("o4", "Patient/c", None)]}}
    await store(client, data)
    for pid in ("a", "b", "c"):
        expected = select(data["Observation"], lambda r, p=pid: in_compartment(r, p))
        assert await search_ids(client, f"Patient/{pid}/Observation") == expected, pid
    assert select(data["Observation"], lambda r: in_compartment(r, "b")) == {"o1", "o2"}


async def test_compartment_is_not_a_plain_filter_on_other_patients(syn: Loaded) -> None:
    pid = sorted(syn.data["Patient"])[0]
    other = sorted(syn.data["Patient"])[1]
    got = await search_ids(syn.client, f"Patient/{pid}/Encounter", {"subject": f"Patient/{other}"})
    assert got == set()
