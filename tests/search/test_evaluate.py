"""The Python evaluator (``search/evaluate.py``) on search values extracted from small
resources (``search/extract.py``), including the logging and counting of values that
could not be extracted. Pure: no database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from fhir_server.search import values as v
from fhir_server.search.evaluate import evaluate
from fhir_server.search.extract import index_resource
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    Chain,
    Cmp,
    Ids,
    KeysInSet,
    StoredSet,
    Updated,
    and_,
    or_,
)

BASE = "http://testserver/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05",
           "name": [{"family": "Müller", "given": ["Zoë"]}],
           "managingOrganization": {"reference": f"{BASE}/Organization/o1"}}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "valueQuantity": {"value": Decimal("72.50"), "system": "http://unitsofmeasure.org",
                                 "code": "kg", "unit": "kg"}}


def judge(query: object, resource: dict[str, object], ts: datetime | None = None) -> bool:
    index = index_resource(resource, base_url=BASE)
    return evaluate(query, id_=str(resource["id"]), index=index, ts=ts)  # type: ignore[arg-type]


def test_keys_prefixes_and_negations() -> None:
    assert judge(v.token("gender", None, ["female"]), PATIENT)
    assert not judge(v.token("gender", "not", ["female"]), PATIENT)
    assert judge(v.token("language", "not", ["en"]), PATIENT)  # no value at all: not en
    assert judge(v.string("family", None, ["MUL"]), PATIENT)
    assert judge(v.string("given", "contains", ["OË"]), PATIENT)
    assert not judge(v.string("family", "exact", ["muller"]), PATIENT)
    assert judge(v.reference("organization", None, ["Organization/o1"], targets=("Organization",),
                             base_url=BASE), PATIENT)


def test_elements_and_precision() -> None:
    assert judge(v.date("birthdate", ["1980"]), PATIENT)  # May 1980 lies within 1980
    assert not judge(v.date("birthdate", ["1980-05-10"]), PATIENT)  # a day does not hold May
    assert judge(v.date("birthdate", ["ap1980-05-10"]), PATIENT)
    assert judge(v.quantity("value-quantity", ["72.5|http://unitsofmeasure.org|kg"]), OBSERVATION)
    assert not judge(v.quantity("value-quantity", ["72.5||g"]), OBSERVATION)
    assert judge(v.quantity("value-quantity", ["gt72.4||kg"]), OBSERVATION)


def test_ids_updated_and_logic() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert judge(Ids(("p1",)), PATIENT) and not judge(Ids(("p1",), negate=True), PATIENT)
    assert judge(Updated(Cmp("ts", "ge", at)), PATIENT, ts=at)
    assert not judge(Updated(Cmp("ts", "ge", at)), PATIENT)  # no instant: no _lastUpdated
    assert judge(EVERYTHING, PATIENT) and not judge(NOTHING, PATIENT)
    female, male = v.token("gender", None, ["female"]), v.token("gender", None, ["male"])
    assert judge(or_(male, female), PATIENT) and not judge(and_(male, female), PATIENT)


def test_unresolved_nodes_are_refused() -> None:
    with pytest.raises(ValueError):
        judge(Chain("subject", "Patient", EVERYTHING), OBSERVATION)
    with pytest.raises(ValueError):
        judge(KeysInSet("tk", "code", StoredSet("k")), OBSERVATION)


def _failures(type_: str, param: str) -> float:
    found = REGISTRY.get_sample_value("fhir_search_extraction_failures_total",
                                      {"resource_type": type_, "parameter": param})
    return found or 0.0


def test_a_value_that_cannot_be_extracted_is_logged_and_counted_not_quoted(
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "not-a-date-Müller"
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"code": "AMB"}, "period": {"start": secret},
                 "subject": {"reference": "Patient/p1"}}
    before = _failures("Encounter", "date")
    with caplog.at_level(logging.WARNING, logger="fhir_server.search.extract"):
        index = index_resource(encounter)
    assert _failures("Encounter", "date") == before + 1
    assert not any(e.get("p") == "date" for e in index.get("dt", []))
    assert "subject|Patient/p1" in index["rf"]  # the other parameters are still extracted
    lines = [r.getMessage() for r in caplog.records]
    assert any("type=Encounter" in m and "param=date" in m and "Encounter.period" in m
               for m in lines), lines
    assert not any(secret in m for m in lines)
