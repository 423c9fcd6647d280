"""What a ValueSet contains: its ``compose`` as concept-store selections (one rule for
``$expand``, ``$validate-code`` and the search modifiers ``:in``/``:not-in``).

A compose becomes a ``Plan``: per stored code system version one ``Part`` (the
OR of its includes' conditions, less its excludes), plus the codes listed for
code systems this server does not hold (``Listed``, as the value set gives
them). An include's ``filter``s and ``concept`` list are ANDed; its ``valueSet``
imports are intersected with it (R4: "the intersection of the contents of all
the value sets and the system"); an include of value sets only is their
intersection. ``compose.inactive: false`` keeps only active concepts. A value
set without ``compose`` is its stored ``expansion``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.errors import Invalid, Unprocessable
from fhir_server.storage.concepts import (
    Above,
    Active,
    Below,
    Codes,
    Everything,
    HasProp,
    Not,
    Part,
    Props,
    Regex,
    Select,
    all_of,
    any_of,
)
from fhir_server.storage.patterns import problem
from fhir_server.terminology.catalog import Catalog

MAX_DEPTH = 16  # value set imports nested deeper are refused


@dataclass(frozen=True)
class Listed:
    system: str
    version: str | None
    code: str
    display: str | None = None


@dataclass
class Plan:
    parts: list[Part] = field(default_factory=list)
    listed: list[Listed] = field(default_factory=list)

    def where_for(self, gen: str) -> Select | None:
        found = [p.where for p in self.parts if p.system.gen == gen]
        return any_of(*found) if found else None


def _values(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def filter_select(f: Any, where: str, *, regex_max_length: int) -> Select:
    """One ``compose.include.filter`` as a condition on the concepts of its system. A
    ``regex`` value is RE2 syntax of at most ``regex_max_length`` characters, matched
    against the whole value (``storage/patterns.py``)."""
    if not isinstance(f, dict):
        raise Invalid("A filter must be an object", expression=[where])
    prop, op, value = f.get("property"), f.get("op"), f.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise Invalid("A filter needs property, op and value", expression=[where])
    if op == "regex":
        reason = problem(value, max_length=regex_max_length)
        if reason is not None:
            raise Invalid(reason, expression=[f"{where}.value"])
    if prop in ("concept", "code"):
        hierarchy: dict[str, Select] = {
            "is-a": Below(value), "descendent-of": Below(value, itself=False),
            "is-not-a": Not(Below(value)), "generalizes": Above(value),
            "=": Codes((value,)), "in": Codes(_values(value)), "not-in": Not(Codes(_values(value))),
            "regex": Regex("code", value)}
        if op in hierarchy:
            return hierarchy[op]
    elif prop == "display" and op in ("=", "regex"):
        return Regex("display", re.escape(value) if op == "=" else value)
    else:
        by_value: dict[str, Select] = {
            "=": Props(prop, (value,)), "in": Props(prop, _values(value)),
            "not-in": Not(Props(prop, _values(value))), "regex": Regex(prop, value)}
        if op in by_value:
            return by_value[op]
        if op == "exists" and value in ("true", "false"):
            return HasProp(prop) if value == "true" else Not(HasProp(prop))
    raise Unprocessable(f"The filter '{prop[:64]} {op[:32]}' is not supported",
                        expression=[where], code="not-supported")


async def plan_of(catalog: Catalog, value_set: dict[str, Any], *,
                  seen: tuple[str, ...] = ()) -> Plan:
    url = str(value_set.get("url") or value_set.get("id") or "")
    if url in seen or len(seen) > MAX_DEPTH:
        raise Unprocessable(f"The value set {url[:200]} imports itself", code="processing")
    seen = (*seen, url)
    compose = value_set.get("compose")
    if not isinstance(compose, dict):
        return _from_expansion(value_set)
    plan = Plan()
    for i, inc in enumerate(compose.get("include") or []):
        await _add(catalog, plan, inc, f"ValueSet.compose.include[{i}]", seen)
    excluded = Plan()
    for i, exc in enumerate(compose.get("exclude") or []):
        await _add(catalog, excluded, exc, f"ValueSet.compose.exclude[{i}]", seen)
    out = Plan(listed=[c for c in plan.listed if (c.system, c.code) not in
                       {(x.system, x.code) for x in excluded.listed}])
    for gen in dict.fromkeys(p.system.gen for p in plan.parts):
        system = next(p.system for p in plan.parts if p.system.gen == gen)
        where = plan.where_for(gen) or Everything()
        minus = excluded.where_for(gen)
        listed_out = tuple(c.code for c in excluded.listed if c.system == system.url)
        if listed_out:
            minus = any_of(*(x for x in (minus, Codes(listed_out)) if x is not None))
        if minus is not None:
            where = all_of(where, Not(minus))
        if compose.get("inactive") is False:
            where = all_of(where, Active())
        out.parts.append(Part(system, where))
    return out


async def _add(catalog: Catalog, plan: Plan, inc: Any, where: str, seen: tuple[str, ...]) -> None:
    if not isinstance(inc, dict):
        raise Invalid("An include must be an object", expression=[where])
    imports = [await _imported(catalog, str(u), f"{where}.valueSet[{n}]", seen)
               for n, u in enumerate(inc.get("valueSet") or [])]
    system = inc.get("system")
    if not isinstance(system, str):
        if not imports:
            raise Invalid("An include needs a system or a valueSet", expression=[where])
        _intersect_imports(plan, imports)
        return
    version = inc.get("version") if isinstance(inc.get("version"), str) else None
    listed = [c for c in inc.get("concept") or [] if isinstance(c, dict)
              and isinstance(c.get("code"), str)]
    max_length = catalog.settings.fhir_terminology_regex_max_length
    filters = [filter_select(f, f"{where}.filter[{n}]", regex_max_length=max_length)
               for n, f in enumerate(inc.get("filter") or [])]
    stored = await catalog.system(system, version)
    if stored is None:
        if not listed or filters:
            raise Unprocessable(f"The code system {system[:200]} is not available on this server, "
                                "so the value set cannot be expanded", expression=[where],
                                code="not-supported")
        for c in listed:
            item = Listed(system, version, c["code"], c.get("display"))
            if all(_import_has(i, item) for i in imports):
                plan.listed.append(item)
        return
    conds: list[Select] = [Codes(tuple(c["code"] for c in listed))] if listed else []
    conds += filters
    for imported in imports:
        inner = imported.where_for(stored.gen)
        codes = tuple(c.code for c in imported.listed if c.system == system)
        conds.append(inner if inner is not None else Codes(codes))
    plan.parts.append(Part(stored, all_of(*conds)))


def _import_has(imported: Plan, item: Listed) -> bool:
    return any((c.system, c.code) == (item.system, item.code) for c in imported.listed)


def _intersect_imports(plan: Plan, imports: list[Plan]) -> None:
    first, rest = imports[0], imports[1:]
    for part in first.parts:
        conds = [part.where]
        for other in rest:
            inner = other.where_for(part.system.gen)
            conds.append(inner if inner is not None else Codes(()))
        plan.parts.append(Part(part.system, all_of(*conds)))
    plan.listed += [c for c in first.listed if all(_import_has(o, c) for o in rest)]


async def _imported(catalog: Catalog, canonical: str, where: str,
                    seen: tuple[str, ...]) -> Plan:
    found = await catalog.by_url("ValueSet", canonical)
    if found is None:
        raise Unprocessable(f"The imported value set {canonical[:200]} is not known",
                            expression=[where], code="not-found")
    return await plan_of(catalog, found, seen=seen)


def _from_expansion(value_set: dict[str, Any]) -> Plan:
    expansion = value_set.get("expansion")
    if not isinstance(expansion, dict):
        raise Unprocessable("The value set has neither a compose nor an expansion",
                            expression=["ValueSet.compose"], code="not-supported")
    plan = Plan()

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, dict):
                if isinstance(item.get("code"), str) and isinstance(item.get("system"), str):
                    plan.listed.append(Listed(item["system"], item.get("version"), item["code"],
                                              item.get("display")))
                walk(item.get("contains") or [])

    walk(expansion.get("contains") or [])
    return plan
