"""What a ``patient/`` token may see of each resource type, from one table
(``data/patient_visibility.json``):

* a type of R4's Patient compartment: the patient's compartment (``search/compartment.py``);
* an attributed type: the resources that name the patient another way, each way a search
  path (a reference parameter naming ``Patient/<id>``, or a chain to a type the patient
  may see: ``PaymentReconciliation.detail.request`` -> an Invoice of the compartment);
* a public type (directory, definitions, terminology, prices): all of it, read and search;
* an owned type (Subscription): what the token's app made for its patient (``owned.py``);
* any other type: nothing (deny unless attributable).

A patient token's writes stay in its compartment on every reference that places a
resource in one (``foreign_patients``): a Communication about, or to, another patient is
refused even though its sender makes it also the token's patient's.

Attribution is a search query, so the storage engine confines searches, counts and pages
with it, on every engine, exactly as it confines the compartment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.search.compartment import compartment_query, patient_compartment
from fhir_server.search.normalize import key
from fhir_server.search.query import Chain, Keys, Query, or_

_TABLE = Path(__file__).resolve().parent.parent / "data" / "patient_visibility.json"


class Visibility(Enum):
    COMPARTMENT = "compartment"  # R4's Patient compartment: the patient's own, any letter
    ATTRIBUTED = "attributed"  # names the patient another way: the patient's own, read only
    PUBLIC = "public"  # reference data: all of it, read only
    OWNED = "owned"  # made by the token's app for its patient (owned.py): any letter
    HIDDEN = "hidden"  # nothing


# type -> the record kind where its writer is kept (``subscriptions/state.py`` writes it)
OWNED: dict[str, str] = {"Subscription": "subscriptions"}


@cache
def _table() -> tuple[dict[str, tuple[tuple[str, str], ...]], frozenset[str]]:
    data = json.loads(_TABLE.read_text())
    attributed = {type_: tuple((param, target) for param, target in paths)
                  for type_, paths in data["attributed"].items()}
    return attributed, frozenset(data["public"])


def attribution_paths(type_: str) -> tuple[tuple[str, str], ...]:
    """The (search parameter, target type) paths that make a resource of ``type_`` a
    patient's (empty for a type that is not attributed)."""
    return _table()[0].get(type_, ())


def visibility(type_: str) -> Visibility:
    if type_ == "Patient" or patient_compartment().get(type_):
        return Visibility.COMPARTMENT
    if type_ in OWNED:
        return Visibility.OWNED
    attributed, public = _table()
    if type_ in attributed:
        return Visibility.ATTRIBUTED
    return Visibility.PUBLIC if type_ in public else Visibility.HIDDEN


def patient_query(patient: str, type_: str) -> Query:
    """The resources of ``type_`` that are ``Patient/<patient>``'s (a compartment or an
    attributed type)."""
    if visibility(type_) is Visibility.COMPARTMENT:
        return compartment_query(("Patient", patient), type_)
    paths = attribution_paths(type_)
    if not paths:
        raise ValueError(f"{type_} is neither in the Patient compartment nor attributed")
    return or_(*[Keys("rf", (key(param, f"Patient/{patient}"),)) if target == "Patient"
                 else Chain(param, target, patient_query(patient, target))
                 for param, target in paths])


def foreign_patients(type_: str, index: Mapping[str, Any], patient: str) -> list[str]:
    """The references of a resource's search values (``index``) that would put it in the
    compartment of a patient other than ``patient``, as ``param|Patient/<id>`` (none for a
    type outside the compartment)."""
    params = patient_compartment().get(type_, [])
    mine = {key(param, f"Patient/{patient}") for param in params}
    prefixes = tuple(key(param, "Patient/") for param in params)
    return sorted(k for k in index.get("rf", ()) if isinstance(k, str)
                  and k.startswith(prefixes) and k not in mine)
