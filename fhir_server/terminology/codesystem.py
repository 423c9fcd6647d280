"""A CodeSystem resource's concepts as stored rows: the hierarchy, status and properties.

The hierarchy comes from nesting (``concept.concept``), from the ``parent`` and
``subsumedBy`` properties of a concept, and from the ``child`` properties of
others (HL7 v3 code systems give a concept's other parents that way), so a
concept can have several parents. Its ancestors are every concept reachable
upwards (cycles in bad content are cut). A concept is inactive when its
``status`` is retired or inactive (a deprecated concept is still active), or its ``inactive`` property is
true; abstract when ``notSelectable`` or ``abstract`` is true.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.storage.concepts import ConceptRow, property_value

HIERARCHY_PROPERTIES = ("parent", "child", "subsumedBy")
INACTIVE_STATUS = frozenset({"retired", "inactive"})
INDEXED_CONTENT = frozenset({"complete", "fragment", "example"})


def _flatten(concepts: list[Any], parent: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
    for concept in concepts:
        if isinstance(concept, dict) and isinstance(concept.get("code"), str):
            yield concept, parent
            yield from _flatten(concept.get("concept") or [], concept["code"])


def _ancestors(code: str, parents: dict[str, list[str]], memo: dict[str, tuple[str, ...]],
               visiting: set[str]) -> tuple[str, ...]:
    if code in memo:
        return memo[code]
    visiting.add(code)
    out: dict[str, None] = {}
    for parent in parents.get(code, []):
        if parent in visiting or parent == code:
            continue  # a cycle in the content: cut it
        out[parent] = None
        out.update((a, None) for a in _ancestors(parent, parents, memo, visiting))
    visiting.discard(code)
    out.pop(code, None)
    memo[code] = tuple(out)
    return memo[code]


def _flag(props: list[dict[str, Any]], name: str) -> bool:
    return any(p.get("code") == name and property_value(p) == "true" for p in props)


def concept_rows(resource: dict[str, Any]) -> list[ConceptRow]:
    """The concepts of a CodeSystem resource, in its order."""
    flat = list(_flatten(resource.get("concept") or [], None))
    parents: dict[str, list[str]] = {}
    for concept, nested_in in flat:
        code = concept["code"]
        found = parents.setdefault(code, [])
        if nested_in is not None and nested_in not in found:
            found.append(nested_in)
        for prop in concept.get("property") or []:
            value = property_value(prop) if isinstance(prop, dict) else None
            if value is None:
                continue
            if prop.get("code") in ("parent", "subsumedBy") and value not in found:
                found.append(value)
            elif prop.get("code") == "child":
                below = parents.setdefault(value, [])
                if code not in below:
                    below.append(code)
    known = {concept["code"] for concept, _ in flat}
    memo: dict[str, tuple[str, ...]] = {}
    rows: list[ConceptRow] = []
    seen: set[str] = set()
    for concept, _ in flat:
        code = concept["code"]
        if code in seen:
            continue  # a code listed twice: the first one counts
        seen.add(code)
        props = [p for p in concept.get("property") or [] if isinstance(p, dict)]
        mine = tuple(p for p in parents.get(code, []) if p in known)
        rows.append(ConceptRow(
            code=code, display=concept.get("display"), definition=concept.get("definition"),
            parents=mine,
            ancestors=tuple(a for a in _ancestors(code, parents, memo, set()) if a in known),
            active=not (any(p.get("code") == "status" and property_value(p) in INACTIVE_STATUS
                            for p in props) or _flag(props, "inactive")),
            abstract=_flag(props, "notSelectable") or _flag(props, "abstract"),
            designations=tuple(d for d in concept.get("designation") or [] if isinstance(d, dict)),
            properties=tuple(p for p in props if p.get("code") not in HIERARCHY_PROPERTIES)))
    return rows


def indexable(resource: dict[str, Any]) -> bool:
    """Whether a CodeSystem resource carries its concepts (supplements and not-present don't)."""
    return resource.get("content") in INDEXED_CONTENT
