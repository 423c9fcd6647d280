"""Chained parameters (one and several levels) and reverse chaining with _has."""

from __future__ import annotations

from collections.abc import Callable

from tests.search.data import Loaded, Store, search_ids
from tests.search.expect import (
    any_string,
    date_search,
    get,
    human_name_parts,
    refs,
    select,
    token_match,
    tokens,
    tz_robust,
)

Pred = Callable[[dict], bool]


def resolve(data: Store, target: str) -> dict | None:
    rtype, id_ = target.split("/", 1)
    return data.get(rtype, {}).get(id_)


def via(data: Store, paths: tuple[str, ...], target_type: str | None, pred: Pred) -> Pred:
    """A resource matches when something it references (at paths) satisfies pred."""
    def ok(res: dict) -> bool:
        for t in refs(res, *paths):
            if target_type and not t.startswith(target_type + "/"):
                continue
            found = resolve(data, t)
            if found is not None and pred(found):
                return True
        return False
    return ok


def names(p: dict) -> list[str]:
    return [part for n in p.get("name", []) for part in human_name_parts(n)]


async def test_chain_on_typed_reference(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, via(syn.data, ("subject",), "Patient",
                                lambda p: any_string(names(p), "medhurst")))
    assert expected
    got = await search_ids(syn.client, "Encounter", {"subject:Patient.name": "medhurst",
                                                     "_count": "1000"})
    assert got == expected


async def test_chain_untyped_date(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = tz_robust(lambda tz: select(encs, via(
        syn.data, ("subject",), None, lambda p: date_search(get(p, "birthDate"), "ge1990", tz))))
    assert 0 < len(expected) < len(encs)
    got = await search_ids(syn.client, "Encounter", {"subject.birthdate": "ge1990", "_count": "1000"})
    assert got == expected


async def test_chain_to_organization_and_practitioner(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    for params, pred in [
        ({"service-provider.name": "newman"},
         via(syn.data, ("serviceProvider",), None, lambda o: any_string(get(o, "name"), "newman"))),
        ({"participant:Practitioner.family": "simonis"},
         via(syn.data, ("participant.individual",), "Practitioner",
             lambda p: any_string(get(p, "name.family"), "simonis"))),
        ({"practitioner.address-city": "emporia"},
         via(syn.data, ("participant.individual",), "Practitioner",
             lambda p: any_string(get(p, "address.city"), "emporia"))),
    ]:
        expected = select(encs, pred)
        assert 0 < len(expected) < len(encs), params
        got = await search_ids(syn.client, "Encounter", {**params, "_count": "1000"})
        assert got == expected, params


async def test_chain_combined_with_other_criteria(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    male = via(syn.data, ("subject",), "Patient",
               lambda p: token_match(tokens(p["gender"], "code"), "male"))
    expected = select(encs, lambda e: male(e) and token_match(tokens(e["class"], "Coding"), "AMB"))
    assert expected
    got = await search_ids(syn.client, "Encounter", {"subject:Patient.gender": "male",
                                                     "class": "AMB", "_count": "1000"})
    assert got == expected
    # two chains ANDed
    both = select(encs, lambda e: male(e) and via(
        syn.data, ("subject",), "Patient", lambda p: any_string(names(p), "cole"))(e))
    assert both
    got = await search_ids(syn.client, "Encounter", [("subject:Patient.gender", "male"),
                                                     ("subject:Patient.name", "cole"),
                                                     ("_count", "1000")])
    assert got == both


async def test_two_level_chain(ex: Loaded) -> None:
    obs = ex.data["Observation"]
    for params, org_name in [({"subject:Patient.organization.name": "gastro"}, "gastro"),
                             ({"patient.organization.name": "burgers"}, "burgers")]:
        expected = select(obs, via(ex.data, ("subject",), "Patient", via(
            ex.data, ("managingOrganization",), "Organization",
            lambda o, n=org_name: any_string(get(o, "name"), n))))
        assert expected, params
        assert await search_ids(ex.client, "Observation", params) == expected, params


def has(data: Store, rtype: str, paths: tuple[str, ...], pred: Pred) -> Pred:
    """Reverse chain: some resource of rtype references this one (at paths) and satisfies pred."""
    def ok(target: dict) -> bool:
        me = f"{target['resourceType']}/{target['id']}"
        return any(me in refs(r, *paths) and pred(r) for r in data.get(rtype, {}).values())
    return ok


def enc_class(code: str) -> Pred:
    return lambda e: token_match(tokens(e["class"], "Coding"), code)


async def test_has(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    for params, pred in [
        ({"_has:Encounter:patient:class": "EMER"}, has(syn.data, "Encounter", ("subject",),
                                                       enc_class("EMER"))),
        ({"_has:Encounter:subject:class": "HH"}, has(syn.data, "Encounter", ("subject",),
                                                     enc_class("HH"))),
        ({"_has:Encounter:patient:class": "AMB"}, has(syn.data, "Encounter", ("subject",),
                                                      enc_class("AMB"))),
        ({"_has:Encounter:patient:status": "finished"},
         has(syn.data, "Encounter", ("subject",), lambda e: e["status"] == "finished")),
        ({"_has:Encounter:patient:class": "IMP,HH"},
         has(syn.data, "Encounter", ("subject",), lambda e: enc_class("IMP")(e) or enc_class("HH")(e))),
    ]:
        expected = select(pats, pred)
        assert expected, params
        assert await search_ids(syn.client, "Patient", params) == expected, params
    assert select(pats, has(syn.data, "Encounter", ("subject",), enc_class("HH"))) != set(pats)


async def test_has_anded_and_with_other_criteria(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    emer = has(syn.data, "Encounter", ("subject",), enc_class("EMER"))
    imp = has(syn.data, "Encounter", ("subject",), enc_class("IMP"))
    expected = select(pats, lambda p: emer(p) and imp(p))
    assert expected
    got = await search_ids(syn.client, "Patient", [("_has:Encounter:patient:class", "EMER"),
                                                   ("_has:Encounter:patient:class", "IMP")])
    assert got == expected
    expected = select(pats, lambda p: emer(p) and p["gender"] == "female")
    got = await search_ids(syn.client, "Patient", {"_has:Encounter:patient:class": "EMER",
                                                   "gender": "female"})
    assert got == expected


async def test_has_on_examples(ex: Loaded) -> None:
    pats = ex.data["Patient"]
    pred = has(ex.data, "Observation", ("subject",),
               lambda o: token_match(tokens(o.get("code", {}), "CodeableConcept"),
                                     "http://loinc.org|29463-7"))
    expected = select(pats, pred)
    assert expected == {"example"}
    got = await search_ids(ex.client, "Patient", {"_has:Observation:patient:code":
                                                  "http://loinc.org|29463-7"})
    assert got == expected
