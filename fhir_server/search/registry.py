"""The search parameter registry, generated from the official R4 definitions.

``tools/gen_search_registry.py`` writes ``fhir_server/data/search_parameters.json``;
this module loads it and compiles each parameter's FHIRPath expression once (plain
paths to a JSON walk, ``paths.py``; the rest with fhirpathpy).
fhirpathpy has no ``resolve()``: every R4 use of it is a trailing
``.where(resolve() is Type)`` filter, which is removed from the expression and
applied to the references found, by the type they name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from fhir_server.search.paths import compile_path, single_valued

RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is ([A-Za-z]+)\)")
COMMON_BASES = ("Resource", "DomainResource")
PARAMETER_TYPES = frozenset({"string", "token", "reference", "date", "number", "quantity", "uri",
                             "composite"})


def split_top_level(text: str, separator: str) -> list[str]:
    """Split a FHIRPath expression on a separator outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current = ""
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == separator and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    parts.append(current.strip())
    return parts


def split_union(expression: str) -> list[str]:
    """The branches of a FHIRPath union (``a | b``)."""
    return [p for p in split_top_level(expression, "|") if p]


@dataclass(frozen=True)
class Component:
    code: str
    type: str
    expression: str


@dataclass(frozen=True)
class PathPart:
    """One union branch of an expression, with the reference types it keeps (if resolve())."""

    expression: str
    resolve_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    expression: str
    url: str
    description: str
    base: str
    target: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    parts: tuple[PathPart, ...] = field(default=(), compare=False)

    def evaluators(self) -> list[Evaluator]:
        return [Evaluator(_compiled(p.expression), p.resolve_types, p.expression)
                for p in self.parts]


@dataclass(frozen=True)
class Evaluator:
    """One union branch, compiled: the function, the reference types it keeps, its
    expression (an element path, never a value: what a failure is logged with), and the
    top-level elements it starts from (None: it may find values anywhere)."""

    fn: Callable[[Any], list[Any]]
    keep: tuple[str, ...]
    expression: str = ""

    @property
    def roots(self) -> tuple[str, ...] | None:
        return getattr(self.fn, "roots", None)


@cache
def _compiled(expression: str) -> Callable[[Any], list[Any]]:
    walker = compile_path(expression)  # a plain path: walk the JSON
    if walker is not None:
        return walker
    compiled = compile_fhirpath(expression, models["r4"])

    def evaluate(resource: Any) -> list[Any]:
        return list(compiled(resource, None))

    return evaluate


_AS_INFIX = re.compile(r"^\((.+) as ([A-Za-z]+)\)$")
_AS_CALL = re.compile(r"\.as\(([A-Za-z]+)\)")


def as_to_of_type(expression: str) -> str:
    """``(X as T)`` and ``X.as(T)`` -> ``X.ofType(T)``.

    FHIRPath's ``as`` requires a single item and fails on a repeating element
    (``Observation.component.value as Quantity``); ``ofType`` filters a
    collection, which is what a search parameter means.
    """
    match = _AS_INFIX.match(expression.strip())
    if match:
        expression = f"{match.group(1)}.ofType({match.group(2)})"
    return _AS_CALL.sub(r".ofType(\1)", expression)


def _parts(expression: str, type_: str) -> tuple[PathPart, ...]:
    parts: list[PathPart] = []
    for branch in split_union(expression):
        types = tuple(RESOLVE_IS.findall(branch))
        text = as_to_of_type(RESOLVE_IS.sub("", branch))
        for common in COMMON_BASES:
            text = re.sub(rf"^(\(*){common}\.", rf"\g<1>{type_}.", text)
        parts.append(PathPart(expression=text, resolve_types=types))
    return tuple(parts)


@cache
def _raw() -> dict[str, dict[str, Any]]:
    path = Path(__file__).resolve().parent.parent / "data" / "search_parameters.json"
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


@cache
def params_for(type_: str) -> dict[str, SearchParam]:
    """Every search parameter of a resource type, keyed by code (common ones included)."""
    raw = _raw()
    out: dict[str, SearchParam] = {}
    for base in (*COMMON_BASES, type_):
        for code, spec in raw.get(base, {}).items():
            if spec["type"] not in PARAMETER_TYPES:
                continue
            out[code] = SearchParam(
                code=code,
                type=spec["type"],
                expression=spec["expression"],
                url=spec["url"],
                description=spec.get("description", ""),
                base=base,
                target=tuple(spec.get("target", ())),
                components=tuple(Component(**c) for c in spec.get("component", ())),
                parts=_parts(spec["expression"], type_),
            )
    return out


def lookup(type_: str, code: str) -> SearchParam | None:
    return params_for(type_).get(code)


@cache
def extraction_plan(type_: str) -> tuple[tuple[SearchParam, tuple[Evaluator, ...]], ...]:
    """Every parameter of a type with its compiled branches, made once per type."""
    return tuple((p, tuple(p.evaluators())) for p in params_for(type_).values())


@cache
def single_valued_param(type_: str, code: str) -> bool:
    """Whether every resource of the type has at most one value of the parameter (one plain
    path through elements that do not repeat)."""
    param = lookup(type_, code)
    return (param is not None and len(param.parts) == 1 and not param.parts[0].resolve_types
            and single_valued(param.parts[0].expression))
