"""PATCH bodies: JSON Patch (RFC 6902) and FHIRPath Patch (a Parameters resource).

Both produce a new version of the resource, which is then validated and stored
exactly like an update: a patch whose result is invalid changes nothing.
"""

from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass
from typing import Any

import jsonpatch
from fhirpathpy import evaluate as fhirpath_evaluate
from fhirpathpy.models import models
from pydantic import BaseModel

from fhir_server.core.errors import Invalid, Unprocessable
from fhir_server.core.models import inner_class, resource_class
from fhir_server.search.registry import split_top_level

JSON_PATCH = "application/json-patch+json"
OPERATION_TYPES = frozenset({"add", "insert", "delete", "replace", "move"})
_INDEXED = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


def apply_json_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """The resource with the operations applied in order; a failure names the operation
    (its index, op and path) and why, never the resource's values (the library's own
    messages quote the document)."""
    if not isinstance(body, list):
        raise Invalid("A JSON Patch body is an array of operations", code="structure")
    patched: Any = copy.deepcopy(resource)
    for i, operation in enumerate(body):
        try:
            patched = jsonpatch.apply_patch(patched, [operation], in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable(f"JSON Patch {_named(i, operation)}: the test failed "
                                "(the value there differs)") from None
        except jsonpatch.InvalidJsonPatch:
            raise Invalid(f"JSON Patch {_named(i, operation)} is malformed: it needs op, "
                          "path, and value (add, replace, test) or from (move, copy)",
                          code="structure") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                KeyError, IndexError, ValueError):
            raise Unprocessable(f"JSON Patch {_named(i, operation)} could not be applied: "
                                "its path (or from) is not in the resource") from None
    if not isinstance(patched, dict):
        raise Unprocessable("The JSON Patch did not produce a resource")
    return patched


def _named(index: int, operation: Any) -> str:
    """``operation 2 (remove /name/0)``: what the client sent, shortened."""
    if not isinstance(operation, dict):
        return f"operation {index}"
    op, path = operation.get("op"), operation.get("path")
    what = " ".join(str(x)[:100] for x in (op, path) if isinstance(x, str))
    return f"operation {index} ({what})" if what else f"operation {index}"


# -- FHIRPath Patch ---------------------------------------------------------------------

@dataclass
class Location:
    """Where an element lives: its container, its key there, and its list index if any."""

    parent: Any
    key: str | None
    index: int | None
    cls: type[BaseModel] | None

    def get(self) -> Any:
        if self.key is None:
            return self.parent
        value = self.parent.get(self.key)
        return value[self.index] if self.index is not None else value


def _child_class(cls: type[BaseModel] | None, name: str) -> tuple[type[BaseModel] | None, bool]:
    """The model class of a child element and whether the element repeats."""
    if cls is None:
        return None, False
    for field in cls.model_fields.values():
        if field.alias == name:
            is_list = "List" in str(field.annotation) or typing.get_origin(
                field.annotation) is list
            return inner_class(field.annotation), is_list
    return None, False


def _step(locs: list[Location], name: str, index: int | None) -> list[Location]:
    out: list[Location] = []
    for loc in locs:
        value = loc.get()
        if not isinstance(value, dict):
            continue
        key = name if name in value else next(
            (k for k in value if k.startswith(name) and k[len(name):][:1].isupper()), None)
        if key is None:
            continue
        cls, _ = _child_class(loc.cls, key)
        child = value[key]
        if isinstance(child, list):
            indexes = range(len(child)) if index is None else (
                [index] if index < len(child) else [])
            out += [Location(value, key, i, cls) for i in indexes]
        elif index in (None, 0):
            out.append(Location(value, key, None, cls))
    return out


def resolve(resource: dict[str, Any], path: str) -> list[Location]:
    """Locations of the elements a FHIRPath path selects (names, [n], where(), first(), last())."""
    parts = split_top_level(path, ".")
    rtype = resource.get("resourceType")
    if not parts or parts[0] != rtype:
        raise Invalid(f"The path must start with {rtype}", expression=["path"])
    locs = [Location(resource, None, None, resource_class(str(rtype)))]
    for part in parts[1:]:
        if part.startswith("where(") and part.endswith(")"):
            criteria = part[len("where("):-1]
            locs = [loc for loc in locs if _true(loc.get(), criteria)]
        elif part == "first()":
            locs = locs[:1]
        elif part == "last()":
            locs = locs[-1:]
        else:
            match = _INDEXED.match(part)
            if not match:
                raise Invalid("A path step is not supported in FHIRPath Patch "
                              "(names, [n], where(), first() and last() are)",
                              expression=["path"], code="not-supported")
            locs = _step(locs, match.group(1),
                         int(match.group(2)) if match.group(2) is not None else None)
    return locs


def _true(value: Any, criteria: str) -> bool:
    try:
        return fhirpath_evaluate(value, criteria, {}, models["r4"]) == [True]
    except Exception:
        return False


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise Invalid(f"{where} must be an array of objects", expression=[where],
                      code="structure")
    return value


def _parts(operation: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in _objects(operation.get("part") or [], "Parameters.parameter.part"):
        name = part.get("name")
        if not isinstance(name, str):
            raise Invalid("Each part needs a name", expression=["Parameters.parameter.part.name"],
                          code="structure")
        value_key = next((k for k in part if k.startswith("value")), None)
        if value_key is not None:
            out[name] = part[value_key]
        elif "part" in part:
            out[name] = {str(p.get("name")): next((p[k] for k in p if k.startswith("value")),
                                                  None)
                         for p in _objects(part["part"], "Parameters.parameter.part.part")}
    return out


def _single(locs: list[Location], path: str) -> Location:
    if len(locs) != 1:
        raise Unprocessable(f"The path must select one element; it selects {len(locs)}")
    return locs[0]


def _apply_one(resource: dict[str, Any], op: dict[str, Any]) -> None:
    kind, path = op.get("type"), op.get("path")
    if kind not in OPERATION_TYPES or not isinstance(path, str):
        raise Invalid("Each operation needs a type (add, insert, delete, replace, move) and a path",
                      expression=["Parameters.parameter.part"])
    locs = resolve(resource, path)
    if kind == "delete":
        if len(locs) > 1:
            raise Unprocessable(f"The path selects {len(locs)} elements to delete")
        for loc in locs:
            _remove(loc)
        return
    if kind in {"insert", "move"}:
        items = _list_of(locs, path)
        (_list_insert if kind == "insert" else _list_move)(items, op)
        return
    loc = _single(locs, path)
    if kind == "replace":
        _set(loc, op.get("value"))
    elif kind == "add":
        name = op.get("name")
        target = loc.get()
        if not isinstance(name, str) or not isinstance(target, dict):
            raise Unprocessable("add needs a name and a path to an element")
        _, repeats = _child_class(loc.cls, name)
        if repeats:
            target.setdefault(name, []).append(op.get("value"))
        else:
            target[name] = op.get("value")


def _remove(loc: Location) -> None:
    if loc.key is None:
        raise Unprocessable("The resource itself cannot be deleted by a patch")
    if loc.index is None:
        del loc.parent[loc.key]
    else:
        del loc.parent[loc.key][loc.index]
        if not loc.parent[loc.key]:
            del loc.parent[loc.key]


def _set(loc: Location, value: Any) -> None:
    if loc.key is None:
        raise Unprocessable("The resource itself cannot be replaced by a patch")
    if loc.index is None:
        loc.parent[loc.key] = value
    else:
        loc.parent[loc.key][loc.index] = value


def _list_of(locs: list[Location], path: str) -> list[Any]:
    """The list a path selects (all its items share one container and key)."""
    keys = {(id(loc.parent), loc.key) for loc in locs}
    if not locs or len(keys) != 1 or any(loc.index is None for loc in locs):
        raise Unprocessable("The path does not select a repeating element")
    items: list[Any] = locs[0].parent[locs[0].key]
    return items


def _list_insert(items: list[Any], op: dict[str, Any]) -> None:
    index = op.get("index")
    if not isinstance(index, int) or not 0 <= index <= len(items):
        raise Unprocessable(f"insert index must be between 0 and {len(items)}")
    items.insert(index, op.get("value"))


def _list_move(items: list[Any], op: dict[str, Any]) -> None:
    src, dst = op.get("source"), op.get("destination")
    if not (isinstance(src, int) and isinstance(dst, int)
            and 0 <= src < len(items) and 0 <= dst < len(items)):
        raise Unprocessable(f"move source and destination must be between 0 and {len(items) - 1}")
    items.insert(dst, items.pop(src))


def apply_fhirpath_patch(resource: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    if body.get("resourceType") != "Parameters":
        raise Invalid("A FHIRPath Patch body is a Parameters resource", expression=["resourceType"])
    operations = [p for p in _objects(body.get("parameter") or [], "Parameters.parameter")
                  if p.get("name") == "operation"]
    if not operations:
        raise Invalid("The Parameters has no operation", expression=["Parameters.parameter"])
    patched = copy.deepcopy(resource)
    for operation in operations:
        _apply_one(patched, _parts(operation))
    return patched
