"""Unknown parameters and invalid values: 400 by default; Prefer: handling=lenient ignores them."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.search.data import Loaded, entries, entry_ids, link_url, search
from tests.search.expect import select

LENIENT = {"Prefer": "handling=lenient"}

BAD = [
    ("Patient", {"foo": "bar"}, "foo"),
    ("Patient", {"birthdate": "not-a-date"}, "birthdate"),
    ("Patient", {"birthdate": "2020-13-45"}, "birthdate"),
    ("Encounter", {"date": "xx2020"}, "date"),
    ("RiskAssessment", {"probability": "high"}, "probability"),
    ("Observation", {"value-quantity": "abc|http://unitsofmeasure.org|kg"}, "value-quantity"),
    ("Patient", {"name:foo": "x"}, "name"),
    ("Patient", {"birthdate:exact": "1990"}, "birthdate"),
    ("Patient", {"gender:missing": "maybe"}, "gender"),
    ("Patient", {"gender.name": "x"}, "gender"),
    ("Patient", {"_sort": "nonexistent"}, "_sort"),
    ("Patient", {"_count": "many"}, "_count"),
    ("Patient", {"_total": "sometimes"}, "_total"),
    ("Patient", {"_summary": "maybe"}, "_summary"),
    ("Encounter", {"_include": "Encounter:nonexistent"}, "_include"),
    ("Encounter", {"subject:Patient.nonexistent": "x"}, "subject"),
    ("Patient", {"_has:Encounter:patient:nonexistent": "x"}, "nonexistent"),
    ("Observation", {"code-value-quantity": "http://loinc.org|29463-7"}, "code-value-quantity"),
]


def issue_expressions(outcome: dict) -> list[str]:
    return [x for issue in outcome.get("issue", []) for x in issue.get("expression", [])]


@pytest.mark.parametrize(("rtype", "params", "name"), BAD, ids=[f"{b[0]}?{b[1]}" for b in BAD])
async def test_strict_rejects(syn: Loaded, rtype: str, params: dict, name: str) -> None:
    resp = await syn.client.get(rtype, params=params)
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(i["severity"] in ("error", "fatal") for i in outcome["issue"])
    assert any(name in expr for expr in issue_expressions(outcome)), outcome
    # an explicit strict preference is the same
    resp = await syn.client.get(rtype, params=params, headers={"Prefer": "handling=strict"})
    assert resp.status_code == 400


async def test_post_search_rejects_unknown(syn: Loaded) -> None:
    resp = await syn.client.post("Patient/_search", data={"foo": "bar"})
    assert resp.status_code == 400, resp.text
    assert any("foo" in e for e in issue_expressions(resp.json()))


async def test_lenient_ignores_unknown_parameter(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    expected = select(pats, lambda p: p["gender"] == "male")
    bundle = await search(syn.client, "Patient", {"foo": "bar", "gender": "male"}, headers=LENIENT)
    assert set(entry_ids(bundle)) == expected
    outcomes = [e for e in bundle["entry"] if e.get("search", {}).get("mode") == "outcome"]
    assert len(outcomes) == 1
    oo = outcomes[0]["resource"]
    assert oo["resourceType"] == "OperationOutcome"
    assert any("foo" in e for e in issue_expressions(oo))
    self_query = parse_qsl(urlsplit(link_url(bundle, "self") or "").query)
    assert ("gender", "male") in self_query
    assert "foo" not in [k for k, _ in self_query]


async def test_lenient_ignores_invalid_value(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    expected = select(pats, lambda p: p["gender"] == "female")
    bundle = await search(syn.client, "Patient", {"birthdate": "not-a-date", "gender": "female"},
                          headers=LENIENT)
    assert set(entry_ids(bundle)) == expected
    assert any(e["resourceType"] == "OperationOutcome" for e in entries(bundle, "outcome"))
    keys = [k for k, _ in parse_qsl(urlsplit(link_url(bundle, "self") or "").query)]
    assert "birthdate" not in keys and "gender" in keys


async def test_lenient_with_only_unknown_parameters_returns_everything(syn: Loaded) -> None:
    bundle = await search(syn.client, "Patient", {"nonsense": "1", "_count": "100"},
                          headers=LENIENT)
    assert set(entry_ids(bundle)) == set(syn.data["Patient"])


async def test_valid_search_has_no_outcome_entry(syn: Loaded) -> None:
    bundle = await search(syn.client, "Patient", {"gender": "male"}, headers=LENIENT)
    assert entries(bundle, "outcome") == []
    self_query = parse_qsl(urlsplit(link_url(bundle, "self") or "").query)
    assert ("gender", "male") in self_query
