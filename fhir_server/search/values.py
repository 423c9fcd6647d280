"""Filter fragments for one search value of each parameter type (pure functions).

Every function returns a MongoDB filter over the stored search values
(``ix``, see ``extract.py``); an invalid value raises ``Invalid`` naming the
parameter.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.search.dates import date_range
from fhir_server.search.extract import normalize_reference
from fhir_server.search.normalize import ANY_SYSTEM, decimal_range, fold, key
from fhir_server.search.parse import prefix_of, split_unescaped, unescape
from fhir_server.storage.model import now_ms

Filter = dict[str, Any]


def _prefix_regex(kind: str, text: str) -> Filter:
    return {f"ix.{kind}": {"$regex": "^" + re.escape(text)}}


# -- token ----------------------------------------------------------------------------

def token_key(param: str, value: str) -> str:
    parts = split_unescaped(value, "|")
    if len(parts) == 1:
        if not parts[0]:
            raise Invalid(f"Search parameter '{param}' needs a code", expression=[param])
        return key(param, ANY_SYSTEM, parts[0])
    system, code = parts[0], "|".join(parts[1:])
    if not system and not code:
        raise Invalid(f"Search parameter '{param}' needs a system or a code", expression=[param])
    return key(param, system, code)


def token(param: str, modifier: str | None, values: list[str]) -> Filter:
    if modifier is None:
        keys = [token_key(param, v) for v in values]
        return {"ix.tk": keys[0]} if len(keys) == 1 else {"ix.tk": {"$in": keys}}
    if modifier == "not":
        return {"ix.tk": {"$nin": [token_key(param, v) for v in values]}}
    if modifier == "text":
        return {"$or": [_prefix_regex("tt", key(param, fold(unescape(v)))) for v in values]}
    if modifier == "of-type":
        out = []
        for v in values:
            parts = split_unescaped(v, "|")
            if len(parts) != 3 or not all(parts):
                raise Invalid(f"{param}:of-type takes type-system|type-code|value",
                              expression=[f"{param}:of-type"])
            out.append(key(param, *parts))
        return {"ix.ot": {"$in": out}}
    raise Invalid(f"Modifier ':{modifier}' is not supported on token parameter '{param}'",
                  expression=[f"{param}:{modifier}"], code="not-supported")


# -- string ---------------------------------------------------------------------------

def string(param: str, modifier: str | None, values: list[str]) -> Filter:
    clauses: list[Filter] = []
    for raw in values:
        value = unescape(raw)
        if modifier is None:
            clauses.append(_prefix_regex("st", key(param, fold(value))))
        elif modifier == "exact":
            clauses.append({"ix.sx": key(param, value)})
        elif modifier == "contains":
            clauses.append({"ix.st": {"$regex": "^" + re.escape(key(param, "")) + ".*"
                                      + re.escape(fold(value))}})
        else:
            raise Invalid(f"Modifier ':{modifier}' is not supported on string parameter "
                          f"'{param}'", expression=[f"{param}:{modifier}"], code="not-supported")
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


# -- uri --------------------------------------------------------------------------------

def _above(uri: str) -> list[str]:
    out = [uri]
    while "/" in uri.rstrip("/").split("://", 1)[-1]:
        uri = uri.rstrip("/").rsplit("/", 1)[0]
        out.append(uri)
    return out


def uri(param: str, modifier: str | None, values: list[str]) -> Filter:
    clauses: list[Filter] = []
    for raw in values:
        value = unescape(raw)
        if modifier is None:
            clauses.append({"ix.ur": key(param, value)})
        elif modifier == "below":
            clauses.append(_prefix_regex("ur", key(param, value)))
        elif modifier == "above":
            clauses.append({"ix.ur": {"$in": [key(param, u) for u in _above(value)]}})
        else:
            raise Invalid(f"Modifier ':{modifier}' is not supported on uri parameter '{param}'",
                          expression=[f"{param}:{modifier}"], code="not-supported")
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


# -- reference --------------------------------------------------------------------------

def reference_keys(param: str, value: str, *, modifier: str | None, targets: tuple[str, ...],
                   base_url: str) -> list[str]:
    value = unescape(value)
    norm = normalize_reference(value, base_url)
    if norm is None:
        raise Invalid(f"The value of '{param}' is not a reference",
                      expression=[param])
    if "/" in norm:
        if modifier and not norm.startswith(modifier + "/"):
            return [key(param, f"{modifier}/{norm.rsplit('/', 1)[-1]}")]
        return [key(param, norm)]
    types = (modifier,) if modifier else targets
    return [key(param, f"{t}/{norm}") for t in types]


def reference(param: str, modifier: str | None, values: list[str], *, targets: tuple[str, ...],
              base_url: str) -> Filter:
    if modifier == "identifier":
        keys = [token_key(param, v) for v in values]
        return {"ix.ri": {"$in": keys}}
    keys = [k for v in values for k in reference_keys(param, v, modifier=modifier,
                                                       targets=targets, base_url=base_url)]
    return {"ix.rf": keys[0]} if len(keys) == 1 else {"ix.rf": {"$in": keys}}


# -- date -------------------------------------------------------------------------------

def _date_conditions(prefix: str, lo: datetime, hi: datetime, lo_f: str, hi_f: str) -> Filter:
    eq = {lo_f: {"$gte": lo}, hi_f: {"$lte": hi}}
    if prefix == "eq":
        return eq
    if prefix == "ne":  # a value that is there and not within the range
        return {"$or": [{lo_f: {"$lt": lo}}, {hi_f: {"$gt": hi}}]}
    if prefix == "gt":
        return {hi_f: {"$gt": hi}}
    if prefix == "lt":
        return {lo_f: {"$lt": lo}}
    if prefix == "ge":
        return {"$or": [{hi_f: {"$gt": hi}}, eq]}
    if prefix == "le":
        return {"$or": [{lo_f: {"$lt": lo}}, eq]}
    if prefix == "sa":
        return {lo_f: {"$gte": hi}}
    if prefix == "eb":
        return {hi_f: {"$lte": lo}}
    if prefix == "ap":
        margin = max(abs(now_ms() - lo) * 0.1, timedelta(days=1))
        return {lo_f: {"$lt": shift(hi, margin)}, hi_f: {"$gt": shift(lo, -margin)}}
    raise ValueError(prefix)


def shift(ts: datetime, delta: timedelta) -> datetime:
    """ts + delta, held at the representable bounds."""
    try:
        return ts + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=ts.tzinfo)


def date(param: str, values: list[str]) -> Filter:
    clauses: list[Filter] = []
    for raw in values:
        prefix, text = prefix_of(unescape(raw))
        lo, hi = date_range(text, param=param)
        cond = _date_conditions(prefix, lo, hi, "lo", "hi")
        clauses.append(_elem_or("ix.dt", param, cond))
    return _or(clauses)


def last_updated(values: list[str]) -> Filter:
    """_lastUpdated against the version's instant t, whose range is [t, t + 1 ms)."""
    clauses: list[Filter] = []
    for raw in values:
        prefix, text = prefix_of(unescape(raw))
        lo, hi = date_range(text, param="_lastUpdated")
        conditions: dict[str, Filter] = {
            "eq": {"ts": {"$gte": lo, "$lt": hi}},
            "ne": {"$or": [{"ts": {"$lt": lo}}, {"ts": {"$gte": hi}}]},
            "gt": {"ts": {"$gte": hi}},
            "sa": {"ts": {"$gte": hi}},
            "lt": {"ts": {"$lt": lo}},
            "eb": {"ts": {"$lt": lo}},
            "ge": {"ts": {"$gte": lo}},
            "le": {"ts": {"$lt": hi}},
        }
        if prefix == "ap":
            margin = max(abs(now_ms() - lo) * 0.1, timedelta(days=1))
            clauses.append({"ts": {"$gte": shift(lo, -margin), "$lt": shift(hi, margin)}})
        else:
            clauses.append(conditions[prefix])
    return _or(clauses)


# -- number and quantity -----------------------------------------------------------------

def _decimal(param: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Invalid(f"The value of '{param}' is not a number", expression=[param]) from None
    if not value.is_finite():
        raise Invalid(f"The value of '{param}' is not a number", expression=[param])
    return value


def _number_conditions(prefix: str, value: Decimal, field: str) -> Filter:
    lo, hi = decimal_range(value)
    v = float(value)
    if prefix == "eq":
        return {field: {"$gte": float(lo), "$lt": float(hi)}}
    if prefix == "ne":
        return {"$or": [{field: {"$lt": float(lo)}}, {field: {"$gte": float(hi)}}]}
    if prefix in {"gt", "sa"}:
        return {field: {"$gt": v}}
    if prefix in {"lt", "eb"}:
        return {field: {"$lt": v}}
    if prefix == "ge":
        return {field: {"$gte": v}}
    if prefix == "le":
        return {field: {"$lte": v}}
    if prefix == "ap":
        margin = abs(v) * 0.1
        return {field: {"$gte": v - margin, "$lte": v + margin}}
    raise ValueError(prefix)


def number(param: str, values: list[str]) -> Filter:
    clauses: list[Filter] = []
    for raw in values:
        prefix, text = prefix_of(unescape(raw))
        value = _decimal(param, text)
        clauses.append(_elem_or("ix.nm", param, _number_conditions(prefix, value, "v")))
    return _or(clauses)


def quantity_condition(param: str, raw: str) -> tuple[str, Filter]:
    """The prefix and the element conditions of one quantity value ``[prefix]n|system|code``."""
    parts = split_unescaped(raw, "|")
    prefix, text = prefix_of(parts[0])
    value = _decimal(param, text)
    conjuncts = [_number_conditions(prefix, value, "v")]
    if len(parts) >= 3:
        system, code = parts[1], "|".join(parts[2:])
        if system:
            conjuncts.append({"s": system, **({"c": code} if code else {})})
        elif code:
            conjuncts.append({"$or": [{"c": code}, {"u": code}]})
    elif len(parts) == 2:
        raise Invalid(f"A quantity for '{param}' must be number|system|code",
                      expression=[param])
    ors = [c for c in conjuncts if "$or" in c]
    cond: Filter = {k: v for c in conjuncts if "$or" not in c for k, v in c.items()}
    if len(ors) == 1:
        cond["$or"] = ors[0]["$or"]
    elif ors:
        cond["$and"] = ors
    return prefix, cond


def quantity(param: str, values: list[str]) -> Filter:
    clauses: list[Filter] = []
    for raw in values:
        _, cond = quantity_condition(param, raw)
        clauses.append(_elem_or("ix.qt", param, cond))
    return _or(clauses)


# -- helpers -----------------------------------------------------------------------------

def _elem_or(field: str, param: str, cond: Filter) -> Filter:
    """$elemMatch on one element kind; an $or inside the conditions becomes an $or of elemMatches."""
    if set(cond) == {"$or"}:
        return {"$or": [{field: {"$elemMatch": {"p": param, **c}}} for c in cond["$or"]]}
    return {field: {"$elemMatch": {"p": param, **cond}}}


def _or(clauses: list[Filter]) -> Filter:
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}
