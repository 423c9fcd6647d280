"""Compartment search (``Patient/[id]/[type]``), from the Patient CompartmentDefinition."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fhir_server.core.errors import Invalid
from fhir_server.search.normalize import key
from fhir_server.search.query import Ids, Keys, Query, or_

COMPARTMENTS = ("Patient",)


@cache
def patient_compartment() -> dict[str, list[str]]:
    """Resource type -> the reference parameters that put it in a patient's compartment."""
    path = Path(__file__).resolve().parent.parent / "data" / "compartment_patient.json"
    data: dict[str, list[str]] = json.loads(path.read_text())
    return data


def compartment_query(compartment: tuple[str, str], type_: str) -> Query:
    kind, id_ = compartment
    if kind not in COMPARTMENTS:
        raise Invalid(f"'{kind}' compartments are not supported; Patient is",
                      code="not-supported")
    params = patient_compartment().get(type_)
    clauses: list[Query] = []
    if type_ == kind:
        clauses.append(Ids((id_,)))
    if params:
        clauses.append(Keys("rf", tuple(key(p, f"{kind}/{id_}") for p in params)))
    if not clauses:
        raise Invalid(f"{type_} is not in the {kind} compartment", code="not-supported")
    return or_(*clauses)
