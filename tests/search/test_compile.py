"""Query compilation (``search/compile.py``): parameters ANDed, comma values ORed, chains
and ``_has`` as nodes holding their inner query, ``:missing``, and errors naming the
parameter. Pure: no database."""

from __future__ import annotations

import pytest

from fhir_server.core.errors import Invalid
from fhir_server.search import values as v
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.normalize import key
from fhir_server.search.parse import criteria_of
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    AllOf,
    And,
    Chain,
    Element,
    Has,
    Ids,
    Keys,
    NoKeys,
    Or,
    walk,
)

BASE = "http://testserver/fhir"


def compiled(type_: str, query: str, *, lenient: bool = False) -> tuple[object, CompileContext]:
    ctx = CompileContext(base_url=BASE, lenient=lenient)
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    return compile_criteria(ctx, type_, criteria_of(params)), ctx  # type: ignore[arg-type]


def test_parameters_and_values() -> None:
    query, ctx = compiled("Patient", "gender=male,female&family=ann")
    assert query == And((v.token("gender", None, ["male", "female"]),
                         v.string("family", None, ["ann"])))
    assert ctx.used == [("gender", "male,female"), ("family", "ann")]


def test_result_parameters_are_not_criteria() -> None:
    query, _ = compiled("Patient", "_count=5&_sort=family&gender=male")
    assert query == v.token("gender", None, ["male"])


def test_id_missing_and_the_server_values() -> None:
    assert compiled("Patient", "_id=a,b")[0] == Ids(("a", "b"))
    assert compiled("Patient", "_id:not=a")[0] == Ids(("a",), negate=True)
    assert compiled("Patient", "gender:missing=true")[0] == NoKeys("has", ("gender",))
    assert compiled("Patient", "gender:missing=false")[0] == Keys("has", ("gender",))
    assert compiled("Patient", "_id:missing=true")[0] == NOTHING
    assert compiled("Patient", "_lastUpdated:missing=false")[0] == EVERYTHING


def test_a_chain_holds_its_inner_query_per_target_type() -> None:
    query, _ = compiled("Observation", "subject.name=ann")
    assert isinstance(query, Or | Chain)
    chains = [n for n in walk(query) if isinstance(n, Chain)]
    # subject may point to Patient, Group, Device, Location: only those with a 'name'
    assert {c.target for c in chains} >= {"Patient"}
    patient = next(c for c in chains if c.target == "Patient")
    assert patient.inner == v.string("name", None, ["ann"])
    typed, _ = compiled("Observation", "subject:Patient.name=ann")
    assert typed == Chain("subject", "Patient", v.string("name", None, ["ann"]))


def test_has_holds_its_inner_query() -> None:
    query, _ = compiled("Patient", "_has:Observation:subject:code=1234")
    assert query == Has("Observation", "subject", "Patient", v.token("code", None, ["1234"]))


def test_single_valued_ranges_merge_into_one_element() -> None:
    """Patient.birthDate holds one value: ``ge`` and ``lt`` must hold for the same one."""
    query, _ = compiled("Patient", "birthdate=ge2000&birthdate=lt2010")
    first, second = v.date("birthdate", ["ge2000"]), v.date("birthdate", ["lt2010"])
    assert isinstance(first, Element) and isinstance(second, Element)
    assert query == Element("dt", "birthdate", AllOf((first.cond, second.cond)))


def test_repeating_ranges_stay_apart() -> None:
    """Observation.component repeats: each condition may hold for another component."""
    query, _ = compiled("Observation", "component-value-quantity=gt5&component-value-quantity=lt9")
    assert isinstance(query, And) and len(query.parts) == 2


def test_composites() -> None:
    query, _ = compiled("Observation", "code-value-concept=http://loinc.org|1$2")
    assert query == Keys("cp", (key("code-value-concept", "http://loinc.org|1$*|2"),))
    quantity, _ = compiled("Observation", "code-value-quantity=1$gt5")
    assert isinstance(quantity, Element) and quantity.kind == "cr"


@pytest.mark.parametrize(("type_", "query", "named"), [
    ("Patient", "nonsense=1", "nonsense"),
    ("Patient", "birthdate=notadate", "birthdate"),
    ("Patient", "birthdate:exact=2000", "birthdate:exact"),
    ("Patient", "gender=", "gender"),
    ("Patient", "family.name=x", "family.name"),
    ("Patient", "_has:Nope:subject:code=1", "_has:Nope:subject:code"),
    ("Observation", "subject:Nope.name=x", "subject:Nope.name"),
])
def test_errors_name_the_parameter(type_: str, query: str, named: str) -> None:
    with pytest.raises(Invalid) as error:
        compiled(type_, query)
    assert any(named in e for e in error.value.expression)


def test_lenient_mode_skips_and_reports() -> None:
    query, ctx = compiled("Patient", "nonsense=1&gender=male", lenient=True)
    assert query == v.token("gender", None, ["male"])
    assert len(ctx.ignored) == 1 and ctx.used == [("gender", "male")]
