"""The condition of one search value of each parameter type (pure functions).

Every function returns a ``query.Query`` over the stored search values
(``ix``, see ``extract.py``); an invalid value raises ``Invalid`` naming the
parameter. This is where FHIR's rules for each type live (prefixes, the
implicit range of a value's precision, modifiers); the engines only compile
the nodes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from fhir_server.core.errors import Invalid
from fhir_server.search.dates import date_range, now_ms
from fhir_server.search.extract import normalize_reference
from fhir_server.search.normalize import ANY_SYSTEM, decimal_range, fold, key
from fhir_server.search.parse import prefix_of, split_unescaped, unescape
from fhir_server.search.query import (
    Cmp,
    Cond,
    Contains,
    Element,
    HierarchyCodes,
    Keys,
    KeysInSet,
    NoKeys,
    Prefix,
    Query,
    Updated,
    ValueSetCodes,
    all_of,
    and_,
    any_of,
    or_,
)

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


def token(param: str, modifier: str | None, values: list[str]) -> Query:
    if modifier is None:
        return Keys("tk", tuple(token_key(param, v) for v in values))
    if modifier == "not":
        return NoKeys("tk", tuple(token_key(param, v) for v in values))
    if modifier == "text":
        return or_(*[Prefix("tt", key(param, fold(unescape(v)))) for v in values])
    if modifier == "of-type":
        out = []
        for v in values:
            parts = split_unescaped(v, "|")
            if len(parts) != 3 or not all(parts):
                raise Invalid(f"{param}:of-type takes type-system|type-code|value",
                              expression=[f"{param}:of-type"])
            out.append(key(param, *parts))
        return Keys("ot", tuple(out))
    if modifier in TERMINOLOGY_MODIFIERS:
        return token_terminology(param, modifier, values)
    raise Invalid(f"Modifier ':{modifier}' is not supported on token parameter '{param}'",
                  expression=[f"{param}:{modifier}"], code="not-supported")


TERMINOLOGY_MODIFIERS = ("in", "not-in", "below", "above")


def token_terminology(param: str, modifier: str, values: list[str]) -> Query:
    """``:in``/``:not-in`` a value set (its url, or ``ValueSet/id``); ``:below``/``:above`` a
    ``system|code`` in its code system's hierarchy (the code itself included)."""
    where = f"{param}:{modifier}"
    if modifier in ("in", "not-in"):
        sets = [KeysInSet("tk", param, ValueSetCodes(unescape(v)), negate=modifier == "not-in")
                for v in values]
        return or_(*sets) if modifier == "in" else and_(*sets)
    clauses: list[Query] = []
    for v in values:
        parts = split_unescaped(v, "|")
        if len(parts) < 2 or not parts[0] or not "|".join(parts[1:]):
            raise Invalid(f"{where} takes system|code (the code system of the hierarchy)",
                          expression=[where])
        clauses.append(KeysInSet("tk", param, HierarchyCodes(
            parts[0], "|".join(parts[1:]), below=modifier == "below")))
    return or_(*clauses)


# -- string ---------------------------------------------------------------------------

def string(param: str, modifier: str | None, values: list[str]) -> Query:
    clauses: list[Query] = []
    for raw in values:
        value = unescape(raw)
        if modifier is None:
            clauses.append(Prefix("st", key(param, fold(value))))
        elif modifier == "exact":
            clauses.append(Keys("sx", (key(param, value),)))
        elif modifier == "contains":
            clauses.append(Contains("st", key(param, ""), fold(value)))
        else:
            raise Invalid(f"Modifier ':{modifier}' is not supported on string parameter "
                          f"'{param}'", expression=[f"{param}:{modifier}"], code="not-supported")
    return or_(*clauses)


# -- uri --------------------------------------------------------------------------------

def _above(uri: str) -> list[str]:
    out = [uri]
    while "/" in uri.rstrip("/").split("://", 1)[-1]:
        uri = uri.rstrip("/").rsplit("/", 1)[0]
        out.append(uri)
    return out


def uri(param: str, modifier: str | None, values: list[str]) -> Query:
    clauses: list[Query] = []
    for raw in values:
        value = unescape(raw)
        if modifier is None:
            clauses.append(Keys("ur", (key(param, value),)))
        elif modifier == "below":
            clauses.append(Prefix("ur", key(param, value)))
        elif modifier == "above":
            clauses.append(Keys("ur", tuple(key(param, u) for u in _above(value))))
        else:
            raise Invalid(f"Modifier ':{modifier}' is not supported on uri parameter '{param}'",
                          expression=[f"{param}:{modifier}"], code="not-supported")
    return or_(*clauses)


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
              base_url: str) -> Query:
    if modifier == "identifier":
        return Keys("ri", tuple(token_key(param, v) for v in values))
    return Keys("rf", tuple(k for v in values for k in reference_keys(
        param, v, modifier=modifier, targets=targets, base_url=base_url)))


# -- date -------------------------------------------------------------------------------

def date_condition(prefix: str, lo: datetime, hi: datetime) -> Cond:
    """A stored range [lo_f, hi_f) against the range [lo, hi) of a searched value."""
    eq = all_of(Cmp("lo", "ge", lo), Cmp("hi", "le", hi))
    if prefix == "eq":
        return eq
    if prefix == "ne":  # a value that is there and not within the range
        return any_of(Cmp("lo", "lt", lo), Cmp("hi", "gt", hi))
    if prefix == "gt":
        return Cmp("hi", "gt", hi)
    if prefix == "lt":
        return Cmp("lo", "lt", lo)
    if prefix == "ge":
        return any_of(Cmp("hi", "gt", hi), eq)
    if prefix == "le":
        return any_of(Cmp("lo", "lt", lo), eq)
    if prefix == "sa":
        return Cmp("lo", "ge", hi)
    if prefix == "eb":
        return Cmp("hi", "le", lo)
    if prefix == "ap":
        margin = max(abs(now_ms() - lo) * 0.1, timedelta(days=1))
        return all_of(Cmp("lo", "lt", shift(hi, margin)), Cmp("hi", "gt", shift(lo, -margin)))
    raise ValueError(prefix)


def shift(ts: datetime, delta: timedelta) -> datetime:
    """ts + delta, held at the representable bounds."""
    try:
        return ts + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=ts.tzinfo)


def date_value(param: str, raw: str) -> Cond:
    prefix, text = prefix_of(unescape(raw))
    lo, hi = date_range(text, param=param)
    return date_condition(prefix, lo, hi)


def date(param: str, values: list[str]) -> Query:
    return or_(*[Element("dt", param, date_value(param, raw)) for raw in values])


def last_updated(values: list[str]) -> Query:
    """_lastUpdated against the version's instant t, whose range is [t, t + 1 ms)."""
    clauses: list[Query] = []
    for raw in values:
        prefix, text = prefix_of(unescape(raw))
        lo, hi = date_range(text, param="_lastUpdated")
        conditions: dict[str, Cond] = {
            "eq": all_of(Cmp("ts", "ge", lo), Cmp("ts", "lt", hi)),
            "ne": any_of(Cmp("ts", "lt", lo), Cmp("ts", "ge", hi)),
            "gt": Cmp("ts", "ge", hi),
            "sa": Cmp("ts", "ge", hi),
            "lt": Cmp("ts", "lt", lo),
            "eb": Cmp("ts", "lt", lo),
            "ge": Cmp("ts", "ge", lo),
            "le": Cmp("ts", "lt", hi),
        }
        if prefix == "ap":
            margin = max(abs(now_ms() - lo) * 0.1, timedelta(days=1))
            cond = all_of(Cmp("ts", "ge", shift(lo, -margin)), Cmp("ts", "lt", shift(hi, margin)))
        else:
            cond = conditions[prefix]
        clauses.append(Updated(cond))
    return or_(*clauses)


# -- number and quantity -----------------------------------------------------------------

def _decimal(param: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Invalid(f"The value of '{param}' is not a number", expression=[param]) from None
    if not value.is_finite():
        raise Invalid(f"The value of '{param}' is not a number", expression=[param])
    return value


def number_condition(prefix: str, value: Decimal) -> Cond:
    lo, hi = decimal_range(value)
    v = float(value)
    if prefix == "eq":
        return all_of(Cmp("v", "ge", float(lo)), Cmp("v", "lt", float(hi)))
    if prefix == "ne":
        return any_of(Cmp("v", "lt", float(lo)), Cmp("v", "ge", float(hi)))
    if prefix in {"gt", "sa"}:
        return Cmp("v", "gt", v)
    if prefix in {"lt", "eb"}:
        return Cmp("v", "lt", v)
    if prefix == "ge":
        return Cmp("v", "ge", v)
    if prefix == "le":
        return Cmp("v", "le", v)
    if prefix == "ap":
        margin = abs(v) * 0.1
        return all_of(Cmp("v", "ge", v - margin), Cmp("v", "le", v + margin))
    raise ValueError(prefix)


def number(param: str, values: list[str]) -> Query:
    clauses: list[Query] = []
    for raw in values:
        prefix, text = prefix_of(unescape(raw))
        clauses.append(Element("nm", param, number_condition(prefix, _decimal(param, text))))
    return or_(*clauses)


def quantity_condition(param: str, raw: str) -> Cond:
    """The element condition of one quantity value ``[prefix]n|system|code``."""
    parts = split_unescaped(raw, "|")
    prefix, text = prefix_of(parts[0])
    conds = [number_condition(prefix, _decimal(param, text))]
    if len(parts) >= 3:
        system, code = parts[1], "|".join(parts[2:])
        if system:
            conds.append(Cmp("s", "eq", system))
            if code:
                conds.append(Cmp("c", "eq", code))
        elif code:
            conds.append(any_of(Cmp("c", "eq", code), Cmp("u", "eq", code)))
    elif len(parts) == 2:
        raise Invalid(f"A quantity for '{param}' must be number|system|code",
                      expression=[param])
    return all_of(*conds)


def quantity(param: str, values: list[str]) -> Query:
    return or_(*[Element("qt", param, quantity_condition(param, raw)) for raw in values])
