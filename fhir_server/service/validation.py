"""Validation of incoming resources.

The served types and their models are ``fhir_server/core/models.py``'s. Structure,
cardinality and primitive formats come from the R4B models. What
they leave out is checked here: the nesting depth (``FHIR_MAX_JSON_DEPTH``,
before the recursive model validation runs), resources nested in others
(``contained``, Bundle entries) of types R4 does not define, required code
bindings (the models list the allowed codes but accept any) and the content
MongoDB-compatible engines cannot store (NUL characters, keys with ``.`` or a
leading ``$``). The resource is validated, never re-serialised: the caller keeps
the client's JSON.
"""

from __future__ import annotations

import datetime
import json
import typing
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from fhir_server.core.errors import Invalid, Issue
from fhir_server.core.fhirjson import check_limits, too_deep
from fhir_server.core.models import DATA, inner_class, resource_class, served_types

MAX_ISSUES = 50


def _fhirpath(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("function-") and part not in {"__root__"}:
            out += f".{part}"
    return out


def _model_issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False, include_input=False)[:MAX_ISSUES]:
        loc = tuple(err.get("loc", ()))
        # Pydantic reports a union's branches as extra loc parts; keep element names.
        loc = tuple(p for p in loc if isinstance(p, int) or (isinstance(p, str) and "[" not in p))
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid value"))
        code = "structure" if kind in {"extra_forbidden", "missing"} else "value"
        if kind == "extra_forbidden":
            msg = "Unknown element"
        issues.append(Issue(code, msg, "error", (_fhirpath(resource_type, loc),)))
    return issues


@cache
def required_bindings() -> dict[str, frozenset[str]]:
    """Codes of each required binding, keyed ``ModelClass.element`` (tools/gen_bindings.py)."""
    table = json.loads((DATA / "required_bindings.json").read_text())
    return {key: frozenset(codes) for key, codes in table.items()}


# The JSON type each FHIR primitive takes (R4 json.html): pydantic's lax mode would also
# take "true" for a boolean, "5" for an integer or a decimal and a number for a date, and
# the stored JSON (the client's own) would then not be FHIR JSON.
_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "integer"), (Decimal, "decimal"), (float, "decimal"),
    (datetime.datetime, "dateTime"), (datetime.date, "date"), (datetime.time, "time"),
    (str, "string"))
_JSON_TYPE = {"boolean": "true or false", "integer": "a whole number", "decimal": "a number"}


def _json_kind(annotation: Any) -> str | None:
    """boolean, integer, decimal, dateTime, date, time or string for a primitive field (the
    last four are JSON strings); None for a complex one."""
    stack = [annotation]
    while stack:
        item = stack.pop()
        for base, kind in _JSON_KINDS:
            if item is base:
                return kind
        stack.extend(typing.get_args(item))
    return None


def _json_ok(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "decimal":
        return isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    return isinstance(value, str)  # strings, and the dates and times written as strings


@cache
def _field_plan(cls: type[BaseModel]
                ) -> dict[str, tuple[str, frozenset[str] | None, str | None]]:
    """Per field of a model class: its JSON name, the codes of its required binding, and
    the JSON kind of a primitive (None: a complex type)."""
    bindings = required_bindings()
    return {name: (field.alias or name, bindings.get(f"{cls.__name__}.{field.alias or name}"),
                   None if inner_class(field.annotation) else _json_kind(field.annotation))
            for name, field in cls.model_fields.items()}


def _walk(model: BaseModel, raw: Any, path: str) -> Iterator[Issue]:
    """What the model took but FHIR does not: a code outside its required binding, and a
    primitive of the wrong JSON type (``raw``: the JSON the model was made from)."""
    plan = _field_plan(type(model))
    raw = raw if isinstance(raw, dict) else {}
    for name in model.model_fields_set:
        value = getattr(model, name, None)
        if value is None or name not in plan:
            continue
        alias, allowed, kind = plan[name]
        values = value if isinstance(value, list) else [value]
        raws = raw.get(alias)
        raws = raws if isinstance(raws, list) else [raws]
        for i, item in enumerate(values):
            where = f"{path}.{alias}" + (f"[{i}]" if isinstance(value, list) else "")
            given = raws[i] if i < len(raws) else None
            if isinstance(item, BaseModel):
                yield from _walk(item, given, where)
                continue
            if kind is not None and given is not None and not _json_ok(kind, given):
                json_type = _JSON_TYPE.get(kind, "a string")
                yield Issue("value", f"A FHIR {kind} is {json_type} in JSON", "error", (where,))
            elif allowed and isinstance(item, str) and item not in allowed:
                shown = ", ".join(sorted(allowed)) if len(allowed) <= 12 else f"{len(allowed)} codes"
                yield Issue(
                    "code-invalid",
                    f"The code is not in the required value set ({shown})",
                    "error",
                    (where,),
                )


DECIMAL_MIN, DECIMAL_MAX = Decimal("1e-300"), Decimal("1e300")  # storable and indexable


def _content(value: Any, path: str) -> Iterator[Issue]:
    """What the models leave out: nested resources of unserved types, and unstorable content."""
    if isinstance(value, dict):
        nested = value.get("resourceType")
        if "." in path and nested is not None and (
                not isinstance(nested, str) or nested not in served_types()):
            yield Issue("not-supported", "The nested resource's type is not a resource type "
                        "this server supports (FHIR R4)", "error", (f"{path}.resourceType",))
        for key, item in value.items():
            if not key or key.startswith("$") or "." in key or "\x00" in key:
                yield Issue("structure", "Element names may not be empty, start with '$' "
                            "or contain '.'", "error", (path,))
                continue
            if item is None:  # null only keeps arrays aligned with their _element twins
                yield Issue("structure", "An element may not be null in FHIR JSON; leave it "
                            "out", "error", (f"{path}.{key}",))
                continue
            yield from _content(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                yield Issue("structure", "Arrays may not contain arrays", "error", (f"{path}[{i}]",))
                continue
            yield from _content(item, f"{path}[{i}]")
    elif isinstance(value, str) and "\x00" in value:
        yield Issue("value", "Strings may not contain the NUL character", "error", (path,))
    elif isinstance(value, Decimal) and (not value.is_finite() or not (
            value == 0 or DECIMAL_MIN <= abs(value) <= DECIMAL_MAX)):
        yield Issue("value", "Decimal values must lie within 1e-300 and 1e300 in magnitude",
                    "error", (path,))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
        yield Issue("value", "Integer values must fit in 64 bits", "error", (path,))


def validate_resource(resource: dict[str, Any], *, max_depth: int,
                      expected_type: str | None = None) -> BaseModel:
    """Validate a parsed resource; raise Invalid with every problem found (up to a limit).

    ``max_depth`` is FHIR_MAX_JSON_DEPTH: whatever produced the resource (a request body,
    a patch, an operation, a payer's answer), nothing deeper reaches the model.
    """
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise Invalid("The resource has no resourceType", expression=["resourceType"],
                      code="structure")
    if expected_type is not None and rtype != expected_type:
        raise Invalid(
            f"resourceType '{rtype[:64]}' does not match the endpoint's type '{expected_type}'",
            expression=["resourceType"],
        )
    cls = resource_class(rtype)
    if cls is None:
        raise Invalid(f"'{rtype[:64]}' is not a resource type this server supports",
                      expression=["resourceType"], code="not-supported")
    check_limits(resource, max_depth=max_depth)
    issues = list(_content(resource, rtype))
    if issues:
        raise Invalid(issues[0].diagnostics, expression=issues[0].expression,
                      code=issues[0].code, extra_issues=issues[1:MAX_ISSUES])
    try:
        model = cls.model_validate(resource)
    except ValidationError as exc:
        issues = _model_issues(rtype, exc)
        raise Invalid(issues[0].diagnostics, expression=issues[0].expression,
                      code=issues[0].code, extra_issues=issues[1:]) from None
    except (ValueError, TypeError, AttributeError) as exc:  # a model's own bug, not a 500
        raise Invalid(f"Invalid resource: {type(exc).__name__}", code="structure") from None
    except RecursionError:  # not expected below the depth limit; never a 500 if it happens
        raise too_deep(resource, max_depth, "resource") from None
    binding_issues = list(_walk(model, resource, rtype))[:MAX_ISSUES]
    if binding_issues:
        first = binding_issues[0]
        raise Invalid(first.diagnostics, expression=first.expression, code=first.code,
                      extra_issues=binding_issues[1:])
    return model
