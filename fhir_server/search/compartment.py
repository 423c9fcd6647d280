"""Compartment search (``Patient/[id]/[type]``), from the Patient CompartmentDefinition."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.search.normalize import key

COMPARTMENTS = ("Patient",)


@cache
def patient_compartment() -> dict[str, list[str]]:
    """Resource type -> the reference parameters that put it in a patient's compartment."""
    path = Path(__file__).resolve().parent.parent / "data" / "compartment_patient.json"
    data: dict[str, list[str]] = json.loads(path.read_text())
    return data


def compartment_filter(compartment: tuple[str, str], type_: str) -> dict[str, Any]:
    kind, id_ = compartment
    if kind not in COMPARTMENTS:
        raise Invalid(f"'{kind}' compartments are not supported; Patient is",
                      code="not-supported")
    params = patient_compartment().get(type_)
    clauses: list[dict[str, Any]] = []
    if type_ == kind:
        clauses.append({"_id": id_})
    if params:
        clauses.append({"ix.rf": {"$in": [key(p, f"{kind}/{id_}") for p in params]}})
    if not clauses:
        raise Invalid(f"{type_} is not in the {kind} compartment", code="not-supported")
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}
