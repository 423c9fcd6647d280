"""compile_criteria(type, criteria) -> a ``query.Query``: parse, look up, dispatch by type.

AND across parameters, OR across comma-separated values. Chained parameters
and ``_has`` become ``Chain`` and ``Has`` nodes holding their inner query;
each engine decides how to run them (SQL joins, or the inner search first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fhir_server.core.errors import Invalid, Issue
from fhir_server.core.models import check_id, resource_class
from fhir_server.search import values as v
from fhir_server.search.normalize import fold, key
from fhir_server.search.parse import Criterion, parse_criterion, split_unescaped
from fhir_server.search.query import (
    EVERYTHING,
    NOTHING,
    Chain,
    Cmp,
    Element,
    Has,
    Ids,
    Keys,
    NoKeys,
    Query,
    all_of,
    and_,
    or_,
)
from fhir_server.search.registry import SearchParam, lookup, params_for, single_valued_param


@dataclass
class CompileContext:
    base_url: str
    lenient: bool = False
    ignored: list[Issue] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)


def _fail(ctx: CompileContext, error: Invalid) -> None:
    if not ctx.lenient:
        raise error
    ctx.ignored.append(Issue("invalid", error.diagnostics, "warning", tuple(error.expression)))


def compile_criteria(ctx: CompileContext, type_: str, criteria: Sequence[Criterion], *,
                     record: bool = True) -> Query:
    clauses: list[Query] = []
    for criterion in criteria:
        try:
            clause = _compile_one(ctx, type_, criterion)
        except Invalid as error:
            _fail(ctx, error)
            continue
        clauses.append(clause)
        if record:
            ctx.used.append((criterion.raw_name, ",".join(criterion.values)))
    return and_(*_merge_single_valued(type_, clauses))


def _merge_single_valued(type_: str, clauses: list[Query]) -> list[Query]:
    """``date=ge2024&date=lt2025`` on a parameter with at most one value per resource: one
    element must meet both conditions, which an index serves as one range (for a
    parameter that repeats, each condition may hold for a different element)."""
    out: list[Query] = []
    seen: dict[tuple[str, str], int] = {}
    for clause in clauses:
        if isinstance(clause, Element) and single_valued_param(type_, clause.param):
            at = seen.get((clause.kind, clause.param))
            if at is not None:
                before = out[at]
                assert isinstance(before, Element)
                out[at] = Element(clause.kind, clause.param, all_of(before.cond, clause.cond))
                continue
            seen[(clause.kind, clause.param)] = len(out)
        out.append(clause)
    return out


def _compile_one(ctx: CompileContext, type_: str, c: Criterion) -> Query:
    if c.name == "_has":
        return _has(ctx, type_, c)
    if c.name in {"_id", "_lastUpdated"} and c.modifier == "missing":
        # Every resource has an id and a last-updated instant.
        return NOTHING if _missing_flag(c) else EVERYTHING
    if c.name == "_id":
        if c.modifier not in (None, "not"):
            raise Invalid(f"Modifier ':{c.modifier}' is not supported on _id",
                          expression=[c.raw_name])
        for value in c.values:
            check_id(value, expression="_id")
        return Ids(tuple(c.values), negate=c.modifier == "not")
    if c.name == "_lastUpdated":
        return v.last_updated(list(c.values))
    param = lookup(type_, c.name)
    if param is None:
        raise Invalid(f"Unknown search parameter '{c.name[:64]}' for resource type {type_}",
                      expression=[c.raw_name[:64]], code="not-supported")
    if c.modifier == "missing":
        return _missing(c)
    if c.chain is not None:
        return _chain(ctx, param, c)
    return _value_query(ctx, param, c.modifier, list(c.values))


def _missing_flag(c: Criterion) -> bool:
    if c.values not in (("true",), ("false",)):
        raise Invalid(f"{c.raw_name} takes true or false", expression=[c.raw_name])
    return c.values == ("true",)


def _missing(c: Criterion) -> Query:
    if _missing_flag(c):
        return NoKeys("has", (c.name,))
    return Keys("has", (c.name,))


def _value_query(ctx: CompileContext, param: SearchParam, modifier: str | None,
                 values: list[str]) -> Query:
    code = param.code
    if any(value == "" for value in values):
        raise Invalid(f"Search parameter '{code}' has an empty value", expression=[code])
    kind = param.type
    if kind in {"date", "number", "quantity", "composite"} and modifier is not None:
        raise Invalid(f"Modifier ':{modifier}' is not supported on {kind} parameter '{code}'",
                      expression=[f"{code}:{modifier}"], code="not-supported")
    if kind == "token":
        return v.token(code, modifier, values)
    if kind == "string":
        return v.string(code, modifier, values)
    if kind == "uri":
        return v.uri(code, modifier, values)
    if kind == "reference":
        if modifier not in (None, "identifier") and resource_class(modifier) is None:
            raise Invalid(f"Modifier ':{modifier}' is not supported on reference parameter "
                          f"'{code}'", expression=[f"{code}:{modifier}"], code="not-supported")
        return v.reference(code, modifier, values, targets=param.target or _all_types(),
                           base_url=ctx.base_url)
    if kind == "date":
        return v.date(code, values)
    if kind == "number":
        return v.number(code, values)
    if kind == "quantity":
        return v.quantity(code, values)
    return _composite(param, values)


def _all_types() -> tuple[str, ...]:
    from fhir_server.core.models import resource_types

    return resource_types()


def _composite(param: SearchParam, values: list[str]) -> Query:
    if len(param.components) != 2:
        raise Invalid(f"Composite parameter '{param.code}' is not supported",
                      expression=[param.code], code="not-supported")
    first, second = param.components
    clauses: list[Query] = []
    for raw in values:
        parts = split_unescaped(raw, "$")
        if len(parts) != 2:
            raise Invalid(f"'{param.code}' takes two values joined by '$'",
                          expression=[param.code])
        k1 = _component_key(param.code, first.type, parts[0])
        if second.type in {"token", "string", "uri", "reference"}:
            k2 = _component_key(param.code, second.type, parts[1])
            clauses.append(Keys("cp", (key(param.code, f"{k1}${k2}"),)))
        elif second.type == "quantity":
            cond = v.quantity_condition(param.code, parts[1])
            clauses.append(Element("cr", param.code, all_of(Cmp("k", "eq", k1), cond)))
        elif second.type == "date":
            cond = v.date_value(param.code, parts[1])
            clauses.append(Element("cr", param.code, all_of(Cmp("k", "eq", k1), cond)))
        else:
            raise Invalid(f"Composite parameter '{param.code}' is not supported",
                          expression=[param.code], code="not-supported")
    return or_(*clauses)


def _component_key(code: str, kind: str, value: str) -> str:
    if kind == "token":
        return v.token_key(code, value).split("|", 1)[1]
    return fold(value)


def _chain(ctx: CompileContext, param: SearchParam, c: Criterion) -> Query:
    if param.type != "reference":
        raise Invalid(f"'{c.name}' is not a reference parameter and cannot be chained",
                      expression=[c.raw_name])
    if c.modifier is not None:
        if resource_class(c.modifier) is None:
            raise Invalid(f"'{c.modifier}' is not a resource type", expression=[c.raw_name])
        targets: tuple[str, ...] = (c.modifier,)
    else:
        targets = param.target
    inner_name = c.chain or ""
    inner_base = inner_name.split(".", 1)[0].split(":", 1)[0]
    candidates = [t for t in targets if inner_base in params_for(t) or inner_base in
                  {"_id", "_lastUpdated", "_has"}]
    if not candidates:
        raise Invalid(f"No target type of '{c.name}' has a search parameter '{inner_base}'",
                      expression=[c.raw_name])
    inner = parse_criterion(inner_name, ",".join(c.values))
    return or_(*[Chain(param.code, target, compile_criteria(ctx, target, [inner], record=False))
                 for target in candidates])


def _has(ctx: CompileContext, type_: str, c: Criterion) -> Query:
    if len(c.has) != 3:
        raise Invalid("_has takes _has:Type:reference-param:search-param=value",
                      expression=[c.raw_name])
    source, ref_param, rest = c.has
    if resource_class(source) is None:
        raise Invalid(f"'{source}' is not a resource type", expression=[c.raw_name])
    ref = lookup(source, ref_param)
    if ref is None or ref.type != "reference":
        raise Invalid(f"'{ref_param}' is not a reference parameter of {source}",
                      expression=[c.raw_name])
    inner = parse_criterion(rest, ",".join(c.values))
    return Has(source, ref_param, type_, compile_criteria(ctx, source, [inner], record=False))
