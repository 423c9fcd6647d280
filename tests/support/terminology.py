"""The terminology content the tests compare the server with: FHIR R4's definition files as
published, what the server packages, and Parameters resources read and built."""

from __future__ import annotations

import gzip
import json
from functools import cache
from typing import Any

from fhir_server.terminology.loader import DEFINITIONS as PACKAGED
from tools.data_sets import definition

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@cache
def raw(name: str) -> tuple[dict[str, Any], ...]:
    """The resources of one of the FHIR R4 definition files, as published."""
    bundle = definition(name)
    return tuple(e["resource"] for e in bundle["entry"])


def raw_resource(type_: str, url: str) -> dict[str, Any]:
    for name in ("valuesets.json", "v2-tables.json", "v3-codesystems.json", "conceptmaps.json"):
        for r in raw(name):
            if r["resourceType"] == type_ and r.get("url") == url:
                return r
    raise KeyError(url)


def packaged() -> list[dict[str, Any]]:
    """What the server loads (fhir_server/terminology/data)."""
    with gzip.open(PACKAGED, "rt") as lines:
        return [json.loads(line) for line in lines]


def params(body: dict[str, Any]) -> dict[str, list[Any]]:
    """A Parameters resource's values by name (the value, or the parts as a dict)."""
    out: dict[str, list[Any]] = {}
    for p in body.get("parameter", []):
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if "part" in p:
            value = params({"parameter": p["part"]})
        out.setdefault(p["name"], []).append(value)
    return out


def parameters(**values: Any) -> dict[str, Any]:
    """A Parameters resource from keyword values (key valueX -> value)."""
    items = []
    for name, (key, value) in values.items():
        items.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": items}
