"""compile_search(type, criteria) -> MongoDB filter: parse, look up, dispatch by type.

AND across parameters, OR across comma-separated values. Chained parameters
and ``_has`` run their inner search first (through the same compiler) and
turn its ids into reference keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Invalid, Issue
from fhir_server.search import values as v
from fhir_server.search.normalize import key
from fhir_server.search.parse import Criterion, split_unescaped
from fhir_server.search.registry import SearchParam, lookup, params_for
from fhir_server.validation import check_id, resource_class

Filter = dict[str, Any]
# Runs a search and returns matching ids (and, for _has, the reference values of one param).
IdSearch = Callable[[str, Filter, int], Awaitable[list[dict[str, Any]]]]
MAX_CHAIN_IDS = 10_000


@dataclass
class CompileContext:
    base_url: str
    find: IdSearch
    lenient: bool = False
    ignored: list[Issue] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)


def _fail(ctx: CompileContext, error: Invalid) -> None:
    if not ctx.lenient:
        raise error
    ctx.ignored.append(Issue("invalid", error.diagnostics, "warning", tuple(error.expression)))


async def compile_criteria(ctx: CompileContext, type_: str,
                           criteria: Sequence[Criterion], *, record: bool = True) -> Filter:
    clauses: list[Filter] = []
    for criterion in criteria:
        try:
            clause = await _compile_one(ctx, type_, criterion)
        except Invalid as error:
            _fail(ctx, error)
            continue
        clauses.append(clause)
        if record:
            ctx.used.append((criterion.raw_name, ",".join(criterion.values)))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


async def _compile_one(ctx: CompileContext, type_: str, c: Criterion) -> Filter:
    if c.name == "_has":
        return await _has(ctx, type_, c)
    if c.name in {"_id", "_lastUpdated"} and c.modifier == "missing":
        # Every resource has an id and a last-updated instant.
        return {"_id": {"$in": []}} if _missing_flag(c) else {}
    if c.name == "_id":
        if c.modifier not in (None, "not"):
            raise Invalid(f"Modifier ':{c.modifier}' is not supported on _id",
                          expression=[c.raw_name])
        for value in c.values:
            check_id(value, expression="_id")
        op = "$nin" if c.modifier == "not" else "$in"
        return {"_id": {op: list(c.values)}} if len(c.values) > 1 or op == "$nin" else {
            "_id": c.values[0]}
    if c.name == "_lastUpdated":
        return v.last_updated(list(c.values))
    param = lookup(type_, c.name)
    if param is None:
        raise Invalid(f"Unknown search parameter '{c.name[:64]}' for resource type {type_}",
                      expression=[c.raw_name[:64]], code="not-supported")
    if c.modifier == "missing":
        return _missing(c)
    if c.chain is not None:
        return await _chain(ctx, param, c)
    return _value_filter(ctx, param, c.modifier, list(c.values))


def _missing_flag(c: Criterion) -> bool:
    if c.values not in (("true",), ("false",)):
        raise Invalid(f"{c.raw_name} takes true or false", expression=[c.raw_name])
    return c.values == ("true",)


def _missing(c: Criterion) -> Filter:
    if _missing_flag(c):
        return {"ix.has": {"$ne": c.name}}
    return {"ix.has": c.name}


def _value_filter(ctx: CompileContext, param: SearchParam, modifier: str | None,
                  values: list[str]) -> Filter:
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
    from fhir_server.validation import resource_types

    return resource_types()


def _composite(param: SearchParam, values: list[str]) -> Filter:
    if len(param.components) != 2:
        raise Invalid(f"Composite parameter '{param.code}' is not supported",
                      expression=[param.code], code="not-supported")
    first, second = param.components
    clauses: list[Filter] = []
    for raw in values:
        parts = split_unescaped(raw, "$")
        if len(parts) != 2:
            raise Invalid(f"'{param.code}' takes two values joined by '$'",
                          expression=[param.code])
        k1 = _component_key(param.code, first.type, parts[0])
        if second.type in {"token", "string", "uri", "reference"}:
            k2 = _component_key(param.code, second.type, parts[1])
            clauses.append({"ix.cp": key(param.code, f"{k1}${k2}")})
        elif second.type == "quantity":
            _, cond = v.quantity_condition(param.code, parts[1])
            clauses.append({"ix.cr": {"$elemMatch": {"p": param.code, "k": k1, **cond}}})
        elif second.type == "date":
            date_filter = v.date(param.code, [parts[1]])
            for_elem = date_filter["ix.dt"]["$elemMatch"] if "ix.dt" in date_filter else None
            if for_elem is None:
                raise Invalid(f"Prefix not supported in composite '{param.code}'",
                              expression=[param.code])
            clauses.append({"ix.cr": {"$elemMatch": {**for_elem, "k": k1}}})
        else:
            raise Invalid(f"Composite parameter '{param.code}' is not supported",
                          expression=[param.code], code="not-supported")
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _component_key(code: str, kind: str, value: str) -> str:
    if kind == "token":
        return v.token_key(code, value).split("|", 1)[1]
    from fhir_server.search.normalize import fold

    return fold(value)


async def _chain(ctx: CompileContext, param: SearchParam, c: Criterion) -> Filter:
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
    keys: list[str] = []
    from fhir_server.search.parse import parse_criterion

    inner = parse_criterion(inner_name, ",".join(c.values))
    for target in candidates:
        filt = await compile_criteria(ctx, target, [inner], record=False)
        rows = await ctx.find(target, filt, MAX_CHAIN_IDS + 1)
        if len(rows) > MAX_CHAIN_IDS:
            raise Invalid(f"The chained search '{c.raw_name}' matches too many resources; "
                          "narrow it", expression=[c.raw_name], code="too-costly")
        keys += [key(param.code, f"{target}/{row['_id']}") for row in rows]
    return {"ix.rf": {"$in": keys}}


async def _has(ctx: CompileContext, type_: str, c: Criterion) -> Filter:
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
    from fhir_server.search.parse import parse_criterion

    inner = parse_criterion(rest, ",".join(c.values))
    filt = await compile_criteria(ctx, source, [inner], record=False)
    rows = await ctx.find(source, filt, MAX_CHAIN_IDS + 1)
    if len(rows) > MAX_CHAIN_IDS:
        raise Invalid(f"'{c.raw_name}' matches too many resources; narrow it",
                      expression=[c.raw_name], code="too-costly")
    prefix = key(ref_param, f"{type_}/")
    ids = sorted({r[len(prefix):] for row in rows for r in row.get("rf", [])
                  if r.startswith(prefix)})
    return {"_id": {"$in": ids}}
