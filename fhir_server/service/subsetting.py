"""``_summary`` and ``_elements``: returning part of a resource.

Which elements are summary or mandatory comes from the R4B models' element
metadata (``summary_element_property``, ``element_required``, and a minimum
cardinality in the field's definition). A subsetted resource carries the
``SUBSETTED`` tag, as the specification asks.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B.backboneelement import BackboneElement
from pydantic import BaseModel

from fhir_server.core.errors import Invalid
from fhir_server.core.models import inner_class, resource_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})
ALWAYS = frozenset({"resourceType", "id", "meta"})


@dataclass(frozen=True)
class ElementInfo:
    summary: bool
    required: bool
    backbone: type[BaseModel] | None  # the class to descend into, for backbone elements


@cache
def elements_of(cls: type[BaseModel]) -> dict[str, ElementInfo]:
    """JSON element name -> what subsetting needs to know about it."""
    out: dict[str, ElementInfo] = {}
    for field in cls.model_fields.values():
        alias = field.alias or ""
        if alias.startswith("_"):
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        inner = inner_class(field.annotation)
        backbone = inner if inner is not None and issubclass(inner, BackboneElement) else None
        out[alias] = ElementInfo(
            summary=bool(extra.get("summary_element_property")),
            required=bool(extra.get("element_required")) or field.is_required(),
            backbone=backbone,
        )
    return out


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags if isinstance(t, dict)):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    return {**resource, "meta": meta}


def _keep(obj: dict[str, Any], cls: type[BaseModel], wanted: typing.Callable[[ElementInfo], bool],
          *, top: bool) -> dict[str, Any]:
    info = elements_of(cls)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key[1:] if key.startswith("_") else key
        if top and name in ALWAYS:
            out[key] = value
            continue
        element = info.get(name)
        if element is None or not wanted(element):
            continue
        if element.backbone is not None and not key.startswith("_"):
            sub = element.backbone
            if isinstance(value, list):
                value = [_keep(v, sub, wanted, top=False) if isinstance(v, dict) else v
                         for v in value]
            elif isinstance(value, dict):
                value = _keep(value, sub, wanted, top=False)
        out[key] = value
    return out


def parse_summary(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in SUMMARY_MODES:
        raise Invalid(f"_summary must be one of {', '.join(sorted(SUMMARY_MODES))}",
                      expression=["_summary"])
    return value


def parse_elements(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset(v.strip() for v in value.split(",") if v.strip())
    for name in names:
        if not name.replace(".", "").replace("_", "").isalnum():
            raise Invalid(f"_elements value '{name[:64]}' is not an element name",
                          expression=["_elements"])
    return names


def subset(resource: dict[str, Any], *, summary: str | None,
           elements: frozenset[str] | None) -> dict[str, Any]:
    """Apply _summary / _elements to one resource (a parsed copy the caller owns)."""
    if summary in (None, "false") and not elements:
        return resource
    cls = resource_class(str(resource.get("resourceType", "")))
    if cls is None:
        return resource
    if summary == "true":
        kept = _keep(resource, cls, lambda e: e.summary, top=True)
    elif summary == "text":
        kept = _keep(resource, cls, lambda e: e.required, top=True)
        if "text" in resource:
            kept["text"] = resource["text"]
    elif summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif elements:
        top_names = {e.split(".", 1)[0] for e in elements}
        kept = _keep(resource, cls, lambda e: e.required, top=True)
        for key, value in resource.items():
            name = key[1:] if key.startswith("_") else key
            if name in top_names:
                kept[key] = value
    else:
        return resource
    return _tagged(kept)
