"""uri (exact, :below, :above), composite parameters, and :missing on every parameter type."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.search.data import Loaded, search_ids
from tests.search.expect import (
    date_search,
    get,
    quantity_match,
    select,
    token_match,
    tokens,
    tz_robust,
    uri_above,
    uri_below,
)

LOINC = "http://loinc.org"


async def test_uri_exact(ex: Loaded) -> None:
    vs = ex.data["ValueSet"]
    for query in ("http://hl7.org/fhir/ValueSet/inactive", "http://hl7.org/fhir/ValueSet/example",
                  "http://hl7.org/fhir/ValueSet/INACTIVE"):
        expected = select(vs, lambda r, q=query: r.get("url") == q)
        assert await search_ids(ex.client, "ValueSet", {"url": query}) == expected, query
    assert select(vs, lambda r: r.get("url") == "http://hl7.org/fhir/ValueSet/inactive") == {"inactive"}


@pytest.mark.parametrize(("rtype", "query"), [
    ("CodeSystem", "http://hl7.org/fhir/CodeSystem"),
    ("CodeSystem", "http://hl7.org/fhir"),
    ("ActivityDefinition", "http://motivemi.com/artifacts"),
    ("ValueSet", "http://hl7.org/fhir/ValueSet/example-extensional"),
])
async def test_uri_below(ex: Loaded, rtype: str, query: str) -> None:
    data = ex.data[rtype]
    expected = select(data, lambda r: isinstance(r.get("url"), str) and uri_below(r["url"], query))
    # premise: a plain string-prefix reading gives the same answer
    assert expected == select(data, lambda r: str(r.get("url", "")).startswith(query))
    assert 0 < len(expected) < len(data)
    assert await search_ids(ex.client, rtype, {"url:below": query}) == expected


@pytest.mark.parametrize(("rtype", "query"), [
    ("CodeSystem", "http://hl7.org/fhir/CodeSystem/example/sub/part"),
    ("ValueSet", "http://hl7.org/fhir/ValueSet/inactive/_history/2"),
    ("Questionnaire", "http://hl7.org/fhir/Questionnaire/gcs/x"),
])
async def test_uri_above(ex: Loaded, rtype: str, query: str) -> None:
    data = ex.data[rtype]
    expected = select(data, lambda r: isinstance(r.get("url"), str) and uri_above(r["url"], query))
    assert len(expected) == 1
    assert await search_ids(ex.client, rtype, {"url:above": query}) == expected


def code_value_quantity(o: dict, code: str, value: str) -> bool:
    return token_match(tokens(o.get("code", {}), "CodeableConcept"), code) and any(
        quantity_match(value, q) for q in get(o, "valueQuantity"))


def component_code_value_quantity(o: dict, code: str, value: str) -> bool:
    return any(token_match(tokens(c.get("code", {}), "CodeableConcept"), code)
               and any(quantity_match(value, q) for q in get(c, "valueQuantity"))
               for c in o.get("component", []))


@pytest.mark.parametrize("query", [
    f"{LOINC}|29463-7$gt180", f"{LOINC}|29463-7$lt180", "29463-7$185",
    f"{LOINC}|8480-6$107",  # a component code: not Observation.code
    f"{LOINC}|29463-7$gt180,{LOINC}|8867-4$lt50",
    f"{LOINC}|39156-5$16.2|http://unitsofmeasure.org|kg/m2",
])
async def test_code_value_quantity(ex: Loaded, query: str) -> None:
    obs = ex.data["Observation"]

    def ok(o: dict) -> bool:
        return any(code_value_quantity(o, *part.split("$", 1)) for part in query.split(","))

    expected = select(obs, ok)
    assert await search_ids(ex.client, "Observation", {"code-value-quantity": query}) == expected


async def test_code_value_quantity_premises(ex: Loaded) -> None:
    obs = ex.data["Observation"]
    assert select(obs, lambda o: code_value_quantity(o, f"{LOINC}|29463-7", "gt180")) == {"example"}
    assert select(obs, lambda o: code_value_quantity(o, f"{LOINC}|29463-7", "lt180")) == set()


@pytest.mark.parametrize("query", [
    f"{LOINC}|8480-6$gt100", f"{LOINC}|8462-4$lt70", f"{LOINC}|8462-4$107",
    f"{LOINC}|8480-6$107|http://unitsofmeasure.org|mm[Hg]", "48643-1$60",
])
async def test_component_code_value_quantity(ex: Loaded, query: str) -> None:
    """Code and value must come from the same component."""
    obs = ex.data["Observation"]
    expected = select(obs, lambda o: component_code_value_quantity(o, *query.split("$", 1)))
    got = await search_ids(ex.client, "Observation", {"component-code-value-quantity": query})
    assert got == expected


async def test_component_pairing_premise(ex: Loaded) -> None:
    obs = ex.data["Observation"]
    # blood-pressure has 8462-4 = 60 and 8480-6 = 107: 8462-4$107 must not match it
    assert select(obs, lambda o: component_code_value_quantity(o, f"{LOINC}|8462-4", "107")) == set()
    assert "blood-pressure" in select(
        obs, lambda o: component_code_value_quantity(o, f"{LOINC}|8462-4", "lt70"))


@pytest.mark.parametrize("query", [
    f"{LOINC}|883-9$http://snomed.info/sct|112144000", "76691-5$191788006",
    f"{LOINC}|883-9$http://snomed.info/sct|191788006",
])
async def test_code_value_concept(ex: Loaded, query: str) -> None:
    obs = ex.data["Observation"]
    code, value = query.split("$", 1)

    def ok(o: dict) -> bool:
        return token_match(tokens(o.get("code", {}), "CodeableConcept"), code) and any(
            token_match(tokens(cc, "CodeableConcept"), value) for cc in get(o, "valueCodeableConcept"))

    expected = select(obs, ok)
    assert await search_ids(ex.client, "Observation", {"code-value-concept": query}) == expected


@pytest.mark.parametrize("query", [f"{LOINC}|8665-2$2016-12", f"{LOINC}|8665-2$lt2016-01-01"])
async def test_code_value_date(ex: Loaded, query: str) -> None:
    obs = ex.data["Observation"]
    code, value = query.split("$", 1)
    expected = tz_robust(lambda tz: select(obs, lambda o: token_match(
        tokens(o.get("code", {}), "CodeableConcept"), code) and date_search(
        get(o, "valueDateTime") + get(o, "valuePeriod"), value, tz)))
    assert await search_ids(ex.client, "Observation", {"code-value-date": query}) == expected


Pred = Callable[[dict], bool]

MISSING: list[tuple[str, str, str, Pred]] = [
    # (type, parameter, parameter type, "has a value" predicate)
    ("Patient", "family", "string", lambda p: bool(get(p, "name.family"))),
    ("Patient", "gender", "token", lambda p: "gender" in p),
    ("Patient", "general-practitioner", "reference", lambda p: bool(get(p, "generalPractitioner"))),
    ("Patient", "link", "reference", lambda p: bool(get(p, "link.other"))),
    ("Patient", "birthdate", "date", lambda p: "birthDate" in p),
    ("RiskAssessment", "probability", "number",
     lambda r: bool(get(r, "prediction.probabilityDecimal") + get(r, "prediction.probabilityRange"))),
    ("Observation", "value-quantity", "quantity",
     lambda o: bool(get(o, "valueQuantity") + get(o, "valueSampledData"))),
    ("Questionnaire", "url", "uri", lambda q: "url" in q),
]


@pytest.mark.parametrize(("rtype", "param", "ptype", "has"), MISSING,
                         ids=[f"{m[0]}.{m[1]}({m[2]})" for m in MISSING])
async def test_missing(ex: Loaded, rtype: str, param: str, ptype: str, has: Pred) -> None:
    data = ex.data[rtype]
    present = select(data, has)
    absent = set(data) - present
    assert present and absent, "premise: both kinds exist"
    assert await search_ids(ex.client, rtype, {f"{param}:missing": "true"}) == absent
    assert await search_ids(ex.client, rtype, {f"{param}:missing": "false"}) == present


async def test_missing_on_synthea(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    absent = select(encs, lambda e: not get(e, "reasonCode"))
    assert 0 < len(absent) < len(encs)
    assert await search_ids(syn.client, "Encounter",
                            {"reason-code:missing": "true", "_count": "1000"}) == absent
    pats = syn.data["Patient"]
    alive = select(pats, lambda p: "deceasedDateTime" not in p)
    assert await search_ids(syn.client, "Patient", {"death-date:missing": "true"}) == alive
    # combined with another parameter
    expected = select(pats, lambda p: "deceasedDateTime" in p and p["gender"] == "female")
    got = await search_ids(syn.client, "Patient", {"death-date:missing": "false", "gender": "female"})
    assert got == expected

