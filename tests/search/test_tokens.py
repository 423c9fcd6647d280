"""Token search: code, system|code, |code, system|, :not, :text, :of-type, OR and AND."""

from __future__ import annotations

import httpx

from tests.search.data import Loaded, entry_ids, search, search_ids, store
from tests.search.expect import (
    any_string,
    get,
    of_type_match,
    select,
    string_match,
    token_match,
    token_values,
    tokens,
)

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _class(e: dict) -> list:
    return tokens(e["class"], "Coding")


async def test_code_only(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, lambda e: token_match(_class(e), "EMER"))
    assert 0 < len(expected) < len(encs)
    assert await search_ids(syn.client, "Encounter", {"class": "EMER", "_count": "200"}) == expected


async def test_system_and_code(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, lambda e: token_match(_class(e), f"{ACT}|IMP"))
    assert expected
    got = await search_ids(syn.client, "Encounter", {"class": f"{ACT}|IMP", "_count": "200"})
    assert got == expected
    # the same code in another system matches nothing
    wrong = await search(syn.client, "Encounter", {"class": "http://example.org/other|IMP"})
    assert entry_ids(wrong) == []


async def test_code_on_code_element(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    expected = select(pats, lambda p: token_match(tokens(p["gender"], "code"), "male"))
    assert 0 < len(expected) < len(pats)
    assert await search_ids(syn.client, "Patient", {"gender": "male"}) == expected


async def test_system_only_on_identifier(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    system = "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber"
    expected = select(pats, lambda p: token_match(token_values(p, "Identifier", "identifier"),
                                                  f"{system}|"))
    assert 0 < len(expected) < len(pats)
    assert await search_ids(syn.client, "Patient", {"identifier": f"{system}|"}) == expected


async def test_identifier_value_with_system(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    target = next(iter(pats.values()))
    ssn = next(i for i in target["identifier"] if i["system"] == "http://hl7.org/fhir/sid/us-ssn")
    query = f"{ssn['system']}|{ssn['value']}"
    expected = select(pats, lambda p: token_match(token_values(p, "Identifier", "identifier"), query))
    assert expected == {target["id"]}
    assert await search_ids(syn.client, "Patient", {"identifier": query}) == expected
    # the value alone (any system)
    assert await search_ids(syn.client, "Patient", {"identifier": ssn["value"]}) == expected


async def test_no_system_and_system_forms(client: httpx.AsyncClient) -> None:
    """'|code' matches only tokens without a system; 'code' matches any system."""
    data = {"Patient": {
        "nosys": {"resourceType": "Patient", "id": "nosys", "identifier": [{"value": "A-1"}]},
        "withsys": {"resourceType": "Patient", "id": "withsys",
                    "identifier": [{"system": "urn:x", "value": "A-1"}]},
        "other": {"resourceType": "Patient", "id": "other",
                  "identifier": [{"system": "urn:x", "value": "B-2"}]},
        "none": {"resourceType": "Patient", "id": "none"},
    }}
    await store(client, data)
    pats = data["Patient"]

    def exp(q: str) -> set[str]:
        return select(pats, lambda p: token_match(token_values(p, "Identifier", "identifier"), q))

    for query in ("|A-1", "A-1", "urn:x|A-1", "urn:x|", "urn:x|B-2"):
        assert await search_ids(client, "Patient", {"identifier": query}) == exp(query), query
    assert exp("|A-1") == {"nosys"}
    assert exp("A-1") == {"nosys", "withsys"}


async def test_boolean_token(ex: Loaded) -> None:
    pats = ex.data["Patient"]
    expected = select(pats, lambda p: token_match(token_values(p, "boolean", "active"), "true"))
    assert 0 < len(expected) < len(pats)
    assert await search_ids(ex.client, "Patient", {"active": "true"}) == expected


async def test_contact_point_token(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    phone = next(iter(pats.values()))["telecom"][0]["value"]

    def phones(p: dict) -> list:
        return [t for cp in p.get("telecom", []) if cp.get("system") == "phone"
                for t in tokens(cp, "ContactPoint")]

    expected = select(pats, lambda p: token_match(phones(p), phone))
    assert len(expected) == 1
    assert await search_ids(syn.client, "Patient", {"phone": phone}) == expected
    assert await search_ids(syn.client, "Patient", {"telecom": phone}) == expected


async def test_not_modifier_includes_missing(ex: Loaded) -> None:
    """:not reverses the match, including resources with no value at all."""
    pats = ex.data["Patient"]
    expected = select(pats, lambda p: not token_match(token_values(p, "code", "gender"), "male"))
    missing = select(pats, lambda p: "gender" not in p)
    assert missing and missing <= expected
    assert await search_ids(ex.client, "Patient", {"gender:not": "male"}) == expected


async def test_not_modifier_with_system(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, lambda e: not token_match(_class(e), f"{ACT}|AMB"))
    assert 0 < len(expected) < 200
    got = await search_ids(syn.client, "Encounter", {"class:not": f"{ACT}|AMB", "_count": "200"})
    assert got == expected


async def test_text_modifier(syn: Loaded) -> None:
    """:text searches CodeableConcept.text and Coding.display as a string."""
    encs = syn.data["Encounter"]
    query = "urgent care"

    def texts(e: dict) -> list[str]:
        return [t for cc in get(e, "type") for t in
                [cc.get("text", ""), *(c.get("display", "") for c in cc.get("coding", []))]]

    expected = select(encs, lambda e: any_string(texts(e), query))
    # the premise holds whether a server matches from the start or anywhere in the text
    assert expected == select(encs, lambda e: any_string(texts(e), query, "contains"))
    assert 0 < len(expected) < len(encs)
    got = await search_ids(syn.client, "Encounter", {"type:text": query, "_count": "200"})
    assert got == expected
    # the code itself is not text
    code = get(next(iter(encs.values())), "type.coding.code")[0]
    assert not any(string_match(t, code) for e in encs.values() for t in texts(e))
    none = await search(syn.client, "Encounter", {"type:text": code})
    assert entry_ids(none) == []


async def test_of_type_modifier(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    target = list(pats.values())[3]
    ssn = next(i for i in target["identifier"]
               if any(c["code"] == "SS" for c in i.get("type", {}).get("coding", [])))
    query = f"{V2_0203}|SS|{ssn['value']}"
    expected = select(pats, lambda p: of_type_match(p.get("identifier", []), query))
    assert expected == {target["id"]}
    assert await search_ids(syn.client, "Patient", {"identifier:of-type": query}) == expected
    # the same value under another identifier type does not match
    wrong = f"{V2_0203}|DL|{ssn['value']}"
    assert select(pats, lambda p: of_type_match(p.get("identifier", []), wrong)) == set()
    assert await search_ids(syn.client, "Patient", {"identifier:of-type": wrong}) == set()


async def test_comma_is_or(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, lambda e: token_match(_class(e), "EMER") or token_match(_class(e), "HH"))
    assert expected
    assert await search_ids(syn.client, "Encounter",
                            {"class": "EMER,HH", "_count": "200"}) == expected


async def test_repeated_parameter_is_and(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    ppn = "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber|"

    def ok(p: dict) -> bool:
        toks = token_values(p, "Identifier", "identifier")
        return token_match(tokens(p["gender"], "code"), "male") and token_match(toks, ppn)

    expected = select(pats, ok)
    assert expected
    got = await search_ids(syn.client, "Patient", [("gender", "male"), ("identifier", ppn)])
    assert got == expected
    # AND over the same parameter: two type codes that no single Encounter carries together
    encs = syn.data["Encounter"]
    both = select(encs, lambda e: token_match(_class(e), "AMB") and token_match(_class(e), "EMER"))
    assert both == set()
    assert await search_ids(syn.client, "Encounter", [("class", "AMB"), ("class", "EMER")]) == both


async def test_post_search_form_body(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = select(encs, lambda e: token_match(_class(e), "HH"))
    resp = await syn.client.post("Encounter/_search", data={"class": "HH", "_count": "200"})
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["type"] == "searchset"
    assert set(entry_ids(bundle)) == expected


async def test_post_search_combines_query_and_body(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    subject = "Patient/" + next(iter(syn.data["Patient"]))
    expected = select(encs, lambda e: token_match(_class(e), "AMB")
                      and e["subject"]["reference"] == subject)
    resp = await syn.client.post("Encounter/_search", params={"class": "AMB"},
                                 data={"subject": subject, "_count": "1000"})
    assert resp.status_code == 200, resp.text
    assert set(entry_ids(resp.json())) == expected


async def test_component_value_concept_with_several_components(ex: Loaded) -> None:
    """(Observation.component.value as CodeableConcept) over every component, not only a single one."""
    obs = ex.data["Observation"]

    def comp_tokens(o: dict) -> list:
        return [t for cc in get(o, "component.valueCodeableConcept") for t in tokens(cc, "CodeableConcept")]

    queries = sorted({f"{s}|{c}" for o in obs.values() for s, c in comp_tokens(o) if s and c})[:12]
    assert len(queries) >= 6
    for query in queries:
        expected = select(obs, lambda o, q=query: token_match(comp_tokens(o), q))
        got = await search_ids(ex.client, "Observation", {"component-value-concept": query})
        assert got == expected, query
