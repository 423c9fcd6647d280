"""Number and quantity search with prefixes; quantity value|system|code and value||code."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.search.data import Loaded, search_ids, store
from tests.search.expect import get, number_match, quantity_match, select

UCUM = "http://unitsofmeasure.org"


def risk(id_: str, *probabilities: str) -> dict:
    return {"resourceType": "RiskAssessment", "id": id_, "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": Decimal(p)} for p in probabilities]}


RISKS = {"RiskAssessment": {r["id"]: r for r in [
    risk("r0", "0.1"), risk("r1", "0.15"), risk("r2", "0.2"), risk("r3", "0.249"),
    risk("r4", "0.25"), risk("r5", "0.3"), risk("r6", "1"), risk("r7", "100"),
    risk("r8", "99.6"), risk("r9", "100.49"), risk("r10", "0.05", "0.9"),
    {"resourceType": "RiskAssessment", "id": "none", "status": "final",
     "subject": {"reference": "Patient/x"}},
]}}

NUMBER_QUERIES = ["0.2", "0.25", "100", "1.0", "eq0.3", "ne0.25", "gt0.25", "lt0.2",
                  "ge0.25", "le0.2", "sa0.3", "eb0.1", "ap100", "ap0.2", "0.15,0.3", "gt200"]


async def test_number_prefixes_and_precision(client: httpx.AsyncClient) -> None:
    await store(client, RISKS)
    data = RISKS["RiskAssessment"]
    for query in NUMBER_QUERIES:
        expected = select(data, lambda r, q=query: any(
            number_match(part, v) for part in q.split(",")
            for v in get(r, "prediction.probabilityDecimal")))
        got = await search_ids(client, "RiskAssessment", {"probability": query})
        assert got == expected, query
    # premises: 100 means [99.5, 100.5); ap is about 10%
    assert select(data, lambda r: any(number_match("100", v)
                                      for v in get(r, "prediction.probabilityDecimal"))) == {
        "r7", "r8", "r9"}
    assert select(data, lambda r: any(number_match("0.25", v)
                                      for v in get(r, "prediction.probabilityDecimal"))) == {"r3", "r4"}


async def test_number_and(client: httpx.AsyncClient) -> None:
    await store(client, RISKS)
    data = RISKS["RiskAssessment"]

    def ok(r: dict) -> bool:
        values = get(r, "prediction.probabilityDecimal")
        return any(number_match("gt0.5", v) for v in values) and any(
            number_match("lt0.1", v) for v in values)

    expected = select(data, ok)
    assert expected == {"r10"}
    assert await search_ids(client, "RiskAssessment",
                            [("probability", "gt0.5"), ("probability", "lt0.1")]) == expected


async def test_number_on_examples(ex: Loaded) -> None:
    data = ex.data["RiskAssessment"]
    for query in ("0.02", "lt0.001", "ge0.0015", "0.000368"):
        expected = select(data, lambda r, q=query: any(
            number_match(q, v) for v in get(r, "prediction.probabilityDecimal")))
        assert expected, query
        assert await search_ids(ex.client, "RiskAssessment", {"probability": query}) == expected, query


def value_quantity(o: dict) -> list[dict]:
    return get(o, "valueQuantity")


QUANTITY_QUERIES = [
    f"185|{UCUM}|[lb_av]", "185", "gt100", "lt1", f"16.2|{UCUM}|kg/m2", "16.2||kg/m2",
    "60||mm[Hg]", "60||mm Hg", f"ge60|{UCUM}|mm[Hg]", f"le6.3|{UCUM}|mmol/L", "ap13",
    f"ne10|{UCUM}|{{score}}", "sa800", "eb0.5", "28|http://snomed.info/sct|258813002",
    f"185|{UCUM}|kg",
]


@pytest.mark.parametrize("query", QUANTITY_QUERIES)
async def test_value_quantity(ex: Loaded, query: str) -> None:
    obs = ex.data["Observation"]
    expected = select(obs, lambda o: any(quantity_match(query, q) for q in value_quantity(o)))
    got = await search_ids(ex.client, "Observation", {"value-quantity": query})
    assert got == expected


async def test_value_quantity_premises() -> None:
    from tests.search.data import examples
    obs = examples("Observation")["Observation"]

    def exp(q: str) -> set[str]:
        return select(obs, lambda o: any(quantity_match(q, x) for x in value_quantity(o)))

    assert exp(f"185|{UCUM}|[lb_av]") == {"example"}
    assert exp(f"185|{UCUM}|kg") == set()
    assert exp("60||mm Hg") == {"map-sitting"}  # matched on the unit
    assert len(exp("gt100")) >= 3


async def test_component_value_quantity(ex: Loaded) -> None:
    obs = ex.data["Observation"]
    for query in ("107", f"lt100|{UCUM}|mm[Hg]", "gt50||mm[Hg]"):
        expected = select(obs, lambda o, q=query: any(quantity_match(q, x)
                                                      for x in get(o, "component.valueQuantity")))
        assert expected, query
        got = await search_ids(ex.client, "Observation", {"component-value-quantity": query})
        assert got == expected, query


async def test_quantity_on_encounter_length(client: httpx.AsyncClient) -> None:
    data = {"Encounter": {
        f"e{i}": {"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                  "class": {"code": "AMB"},
                  "length": {"value": Decimal(v), "unit": u, "system": UCUM, "code": c}}
        for i, (v, u, c) in enumerate([("30", "minutes", "min"), ("45", "minutes", "min"),
                                       ("1", "hours", "h"), ("90", "minutes", "min")])}}
    await store(client, data)
    encs = data["Encounter"]
    # values chosen so that a server converting units (1 h = 60 min) gets the same answers
    for query in ("gt80|http://unitsofmeasure.org|min", "45", "lt40||min", "1||hours", "1||h",
                  "ap1|http://unitsofmeasure.org|h"):
        expected = select(encs, lambda e, q=query: quantity_match(q, e["length"]))
        assert expected, query
        assert await search_ids(client, "Encounter", {"length": query}) == expected, query
