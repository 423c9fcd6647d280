"""Validation of incoming resources.

Structure, cardinality and primitive formats come from the
``fhir.resources.R4B`` models. Two things they leave out are checked here:
required code bindings (the models list the allowed codes but accept any)
and the content MongoDB-compatible engines cannot store (NUL characters,
keys with ``.`` or a leading ``$``). The resource is validated, never
re-serialised: the caller keeps the client's JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource as R4BResource
from pydantic import BaseModel, ValidationError

from fhir_server.errors import Invalid, Issue, NotFound

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_ISSUES = 50


@cache
def resource_class(resource_type: str) -> type[BaseModel] | None:
    """The R4B model of a resource type, or None when it is not a resource type."""
    if not resource_type or not resource_type[0].isupper() or not resource_type.isalnum():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    if not issubclass(cls, R4BResource) or resource_type in {"Resource", "DomainResource"}:
        return None
    return cls


@cache
def resource_types() -> tuple[str, ...]:
    """Every concrete resource type the R4B models define, sorted."""
    import pkgutil

    from fhir.resources import R4B

    found: set[str] = set()
    for info in pkgutil.iter_modules(R4B.__path__):
        module = __import__(f"{R4B.__name__}.{info.name}", fromlist=["_"])
        for name, obj in vars(module).items():
            if (
                isinstance(obj, type)
                and obj.__module__ == module.__name__
                and name.lower() == info.name
                and resource_class(name) is obj
            ):
                found.add(name)
    return tuple(sorted(found))


def require_type(resource_type: str) -> type[BaseModel]:
    cls = resource_class(resource_type)
    if cls is None:
        raise NotFound(f"Resource type '{resource_type}' is not supported by this server",
                       code="not-supported")
    return cls


def check_id(id_: str, *, expression: str = "id") -> None:
    if not ID_RE.match(id_):
        raise Invalid(
            f"'{id_[:70]}' is not a valid FHIR id (1-64 characters of A-Z a-z 0-9 - .)",
            expression=[expression],
        )


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
    path = Path(__file__).parent / "data" / "required_bindings.json"
    table = json.loads(path.read_text())
    return {key: frozenset(codes) for key, codes in table.items()}


@cache
def _field_plan(cls: type[BaseModel]) -> dict[str, tuple[str, frozenset[str] | None]]:
    """Per field of a model class: its JSON name and the codes of its required binding."""
    bindings = required_bindings()
    return {name: (field.alias or name, bindings.get(f"{cls.__name__}.{field.alias or name}"))
            for name, field in cls.model_fields.items()}


def _walk(model: BaseModel, path: str) -> Iterator[Issue]:
    plan = _field_plan(type(model))
    for name in model.model_fields_set:
        value = getattr(model, name, None)
        if value is None or name not in plan:
            continue
        alias, allowed = plan[name]
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            if isinstance(item, BaseModel):
                where = f"{path}.{alias}" + (f"[{i}]" if isinstance(value, list) else "")
                yield from _walk(item, where)
            elif allowed and isinstance(item, str) and item not in allowed:
                where = f"{path}.{alias}" + (f"[{i}]" if isinstance(value, list) else "")
                shown = ", ".join(sorted(allowed)) if len(allowed) <= 12 else f"{len(allowed)} codes"
                yield Issue(
                    "code-invalid",
                    f"The code is not in the required value set ({shown})",
                    "error",
                    (where,),
                )


DECIMAL_MIN, DECIMAL_MAX = Decimal("1e-300"), Decimal("1e300")  # storable and indexable


def _storable(value: Any, path: str) -> Iterator[Issue]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not key or key.startswith("$") or "." in key or "\x00" in key:
                yield Issue("structure", "Element names may not be empty, start with '$' "
                            "or contain '.'", "error", (path,))
                continue
            yield from _storable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                yield Issue("structure", "Arrays may not contain arrays", "error", (f"{path}[{i}]",))
                continue
            yield from _storable(item, f"{path}[{i}]")
    elif isinstance(value, str) and "\x00" in value:
        yield Issue("value", "Strings may not contain the NUL character", "error", (path,))
    elif isinstance(value, Decimal) and (not value.is_finite() or not (
            value == 0 or DECIMAL_MIN <= abs(value) <= DECIMAL_MAX)):
        yield Issue("value", "Decimal values must lie within 1e-300 and 1e300 in magnitude",
                    "error", (path,))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
        yield Issue("value", "Integer values must fit in 64 bits", "error", (path,))


def validate_resource(resource: dict[str, Any], *, expected_type: str | None = None) -> BaseModel:
    """Validate a parsed resource; raise Invalid with every problem found (up to a limit)."""
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
    issues = list(_storable(resource, rtype))
    if issues:
        raise Invalid(issues[0].diagnostics, expression=issues[0].expression,
                      code=issues[0].code, extra_issues=issues[1:MAX_ISSUES])
    try:
        model = cls.model_validate(resource)
    except ValidationError as exc:
        issues = _model_issues(rtype, exc)
        raise Invalid(issues[0].diagnostics, expression=issues[0].expression,
                      code=issues[0].code, extra_issues=issues[1:]) from None
    except (ValueError, TypeError) as exc:
        raise Invalid(f"Invalid resource: {type(exc).__name__}", code="structure") from None
    binding_issues = list(_walk(model, rtype))[:MAX_ISSUES]
    if binding_issues:
        first = binding_issues[0]
        raise Invalid(first.diagnostics, expression=first.expression, code=first.code,
                      extra_issues=binding_issues[1:])
    return model
