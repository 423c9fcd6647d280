"""Plain FHIRPath paths evaluated by walking the JSON, without the FHIRPath engine.

Nearly every R4 search parameter's expression is a plain path
(``Patient.name.family``), sometimes ending in ``.ofType(T)`` or stepping through
``.where(element='literal')``. Those are compiled here, once, into a list of
JSON keys to follow, using fhirpathpy's own R4 model to know the choice
elements (``Observation.value`` is ``valueQuantity``, ``valueString``...). The
walk returns what the FHIRPath engine returns for them, about fifty times
faster; anything else (functions, operators, indexes) is left to the engine
(``compile_path`` answers None).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirpathpy.models import models

MODEL = models["r4"]
_STEP = re.compile(r"^[a-z][A-Za-z0-9]*$")
_OF_TYPE = re.compile(r"^ofType\(([A-Za-z]+)\)$")
_WHERE = re.compile(r"^where\(([a-z][A-Za-z]*)\s*=\s*'([^'\\]*)'\)$")
# Element types whose contents are described under the element's own path.
_BACKBONE = frozenset({"BackboneElement", "Element"})

Walker = Callable[[Any], list[Any]]


@dataclass(frozen=True)
class _Key:
    """Follow one of these JSON keys (several for a choice element)."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class _ResourceType:
    """Keep the contained resources of this type (``ofType`` on a Resource element)."""

    name: str


@dataclass(frozen=True)
class _Where:
    """Keep the elements whose ``key`` equals ``value``."""

    key: str
    value: str


Step = _Key | _ResourceType | _Where


def _split(expression: str) -> list[str] | None:
    """The dot-separated parts of an expression, None when it has anything but dots between
    names and simple function calls."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in expression:
        if ch in "()":
            depth += 1 if ch == "(" else -1
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return None if depth else parts


def _backbone_paths() -> frozenset[str]:
    """Paths of backbone elements: the model lists only their children."""
    return frozenset(p.rsplit(".", 1)[0] for p in MODEL["path2Type"] if p.count(".") > 1)


BACKBONES = _backbone_paths()


def _type_of(path: str) -> str | None:
    path = MODEL["pathsDefinedElsewhere"].get(path, path)
    found: str | None = MODEL["path2Type"].get(path)
    if found is None and path in BACKBONES:
        return "BackboneElement"
    return found


def _compile(expression: str) -> list[Step] | None:
    parts = _split(expression.strip())
    if not parts or not re.match(r"^[A-Z][A-Za-z]*$", parts[0]):
        return None
    steps: list[Step] = []
    base = parts[0]  # the FHIR path the next element name is looked up under
    last: tuple[str, str | None, list[str] | None] | None = None  # (name, type, choice types)
    for part in parts[1:]:
        if _STEP.match(part):
            path = f"{base}.{part}"
            choices = MODEL["choiceTypePaths"].get(path)
            if choices:
                steps.append(_Key(tuple(part + t[0].upper() + t[1:] for t in choices)))
                last, base = (part, None, choices), ""
                continue
            kind = _type_of(path)
            if kind is None:
                return None
            steps.append(_Key((part,)))
            last = (part, kind, None)
            base = MODEL["pathsDefinedElsewhere"].get(path, path) if kind in _BACKBONE else kind
            continue
        of_type = _OF_TYPE.match(part)
        if of_type and last is not None:
            wanted = of_type.group(1)
            name, kind, choices = last
            if choices is not None:
                if not any(t.lower() == wanted.lower() for t in choices):
                    return None
                steps[-1] = _Key((name + wanted[0].upper() + wanted[1:],))
                base = wanted if wanted[0].isupper() else ""
            elif kind == "Resource":
                steps.append(_ResourceType(wanted))
                base = wanted
            elif kind != wanted:
                return None
            continue
        where = _WHERE.match(part)
        if where and last is not None and base:
            if _type_of(f"{base}.{where.group(1)}") is None:
                return None
            steps.append(_Where(where.group(1), where.group(2)))
            continue
        return None
    return steps or None


def _walk(steps: list[Step], root_type: str, resource: Any) -> list[Any]:
    if not isinstance(resource, dict) or resource.get("resourceType") != root_type:
        return []
    current: list[Any] = [resource]
    for step in steps:
        out: list[Any] = []
        if isinstance(step, _Key):
            for item in current:
                if not isinstance(item, dict):
                    continue
                for key in step.keys:
                    value = item.get(key)
                    if value is None:
                        continue
                    if isinstance(value, list):
                        out.extend(v for v in value if v is not None)
                    else:
                        out.append(value)
        elif isinstance(step, _ResourceType):
            out = [i for i in current if isinstance(i, dict) and i.get("resourceType") == step.name]
        else:
            out = [i for i in current if isinstance(i, dict) and i.get(step.key) == step.value]
        current = out
        if not current:
            break
    return current


_TYPE_NAME = re.compile(r"([A-Za-z0-9]+)Type\b")


def _repeats(cls: Any, key: str) -> tuple[bool, Any] | None:
    """Whether a model class's element ``key`` repeats, and the class of its contents
    (None when the key is not one of the class's elements)."""
    from fhir.resources.R4B import get_fhir_model_class

    for field in cls.model_fields.values():
        if (field.alias or "") != key:
            continue
        text = str(field.annotation)
        found = _TYPE_NAME.findall(text)
        try:
            inner = get_fhir_model_class(found[-1]) if found else None
        except (KeyError, ValueError, AttributeError, ImportError):
            inner = None
        return "List[" in text, inner
    return None


def single_valued(expression: str) -> bool:
    """Whether a plain path gives at most one value per resource: no step repeats (a
    choice element, one of several keys, counts once). False when that cannot be told."""
    from fhir_server.core.models import resource_class

    steps = _compile(expression)
    cls: Any = resource_class(expression.strip().split(".", 1)[0])
    if steps is None or cls is None:
        return False
    for i, step in enumerate(steps):
        if isinstance(step, _Where):
            continue
        if not isinstance(step, _Key) or cls is None:
            return False
        if len(step.keys) > 1 and i < len(steps) - 1:
            return False  # a choice in mid-path: its alternatives hold different types
        # A choice element is one of several keys, of which a resource holds at most one.
        found = [_repeats(cls, key) for key in step.keys]
        if any(f is None or f[0] for f in found):
            return False
        cls = found[0][1] if found[0] is not None else None
    return True


class PathWalker:
    """A compiled plain path: called on a resource, it returns the path's values."""

    def __init__(self, steps: list[Step], root_type: str) -> None:
        self.steps = steps
        self.root_type = root_type
        first = steps[0]
        # The resource's top-level keys the path starts from: without one, it finds nothing.
        self.roots = first.keys if isinstance(first, _Key) else None

    def __call__(self, resource: Any) -> list[Any]:
        return _walk(self.steps, self.root_type, resource)


def compile_path(expression: str) -> PathWalker | None:
    """A walker for a plain path expression, or None when it is not one."""
    steps = _compile(expression)
    if steps is None:
        return None
    return PathWalker(steps, expression.strip().split(".", 1)[0])
