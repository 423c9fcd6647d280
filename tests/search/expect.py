"""Independent matching logic for computing expected search results.

Written from the FHIR R4 search specification (https://hl7.org/fhir/R4/search.html),
deliberately without importing anything from ``fhir_server.search``. Tests apply
these helpers to the raw input JSON to compute the ids a search must return.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

Resource = dict[str, Any]

# ---------------------------------------------------------------- navigation


def get(value: Any, path: str) -> list[Any]:
    """All values at a dotted path, lists flattened at every step ('name.given')."""
    current: list[Any] = [value]
    for step in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                found = item[step]
                nxt.extend(found if isinstance(found, list) else [found])
        current = nxt
    return current


def ids(resources: Iterable[Resource]) -> set[str]:
    return {r["id"] for r in resources}


def select(store: dict[str, Resource], pred: Callable[[Resource], bool]) -> set[str]:
    """The ids of the resources in one type's store that satisfy pred."""
    return {id_ for id_, res in store.items() if pred(res)}


# ---------------------------------------------------------------- strings


def fold(text: str) -> str:
    """Case- and accent-insensitive form: decompose, drop combining marks, casefold."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def string_match(target: str, query: str, modifier: str | None = None) -> bool:
    if modifier is None:
        return fold(target).startswith(fold(query))
    if modifier == "contains":
        return fold(query) in fold(target)
    if modifier == "exact":
        return target == query
    raise ValueError(modifier)


def human_name_parts(name: dict[str, Any]) -> list[str]:
    parts = [name.get("family"), name.get("text"), *name.get("given", []),
             *name.get("prefix", []), *name.get("suffix", [])]
    return [p for p in parts if isinstance(p, str)]


def address_parts(addr: dict[str, Any]) -> list[str]:
    parts = [*addr.get("line", []), addr.get("city"), addr.get("district"), addr.get("state"),
             addr.get("postalCode"), addr.get("country"), addr.get("text")]
    return [p for p in parts if isinstance(p, str)]


def any_string(values: Iterable[str], query: str, modifier: str | None = None) -> bool:
    return any(string_match(v, query, modifier) for v in values)


# ---------------------------------------------------------------- tokens

Token = tuple[str | None, str | None]  # (system, code)


def tokens(value: Any, kind: str) -> list[Token]:
    """The (system, code) pairs a token parameter indexes for one element of a known type."""
    if kind == "CodeableConcept":
        return [(c.get("system"), c.get("code")) for c in value.get("coding", [])]
    if kind == "Coding":
        return [(value.get("system"), value.get("code"))]
    if kind == "Identifier":
        return [(value.get("system"), value.get("value"))]
    if kind == "ContactPoint":
        return [(None, value.get("value"))]
    if kind == "code":
        return [(None, value)]
    if kind == "boolean":
        return [(None, "true" if value else "false")]
    raise ValueError(kind)


def token_match(toks: Iterable[Token], query: str) -> bool:
    """One token search value (no modifier) against the tokens of a resource."""
    toks = list(toks)
    if "|" not in query:
        return any(code == query for _, code in toks)
    system, code = query.split("|", 1)
    if system == "":
        return any(s is None and c == code for s, c in toks)
    if code == "":
        return any(s == system for s, _ in toks)
    return any(s == system and c == code for s, c in toks)


def token_values(res: Resource, kind: str, *paths: str) -> list[Token]:
    out: list[Token] = []
    for path in paths:
        for v in get(res, path):
            out.extend(tokens(v, kind))
    return out


def token_texts(value: Any) -> list[str]:
    """What :text searches: CodeableConcept.text, Coding.display, Identifier.type.text."""
    out: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            out.append(value["text"])
        for c in value.get("coding", []):
            if isinstance(c.get("display"), str):
                out.append(c["display"])
        if isinstance(value.get("display"), str):
            out.append(value["display"])
        if isinstance(value.get("type"), dict) and isinstance(value["type"].get("text"), str):
            out.append(value["type"]["text"])
    return out


def of_type_match(identifiers: Iterable[dict[str, Any]], query: str) -> bool:
    """:of-type — 'type-system|type-code|value' against Identifier.type and value."""
    tsys, tcode, val = query.split("|", 2)
    for ident in identifiers:
        if ident.get("value") != val:
            continue
        for c in ident.get("type", {}).get("coding", []):
            if c.get("system") == tsys and c.get("code") == tcode:
                return True
    return False


# ---------------------------------------------------------------- references


def reference_targets(value: Any, base: str = "http://testserver/fhir") -> list[str]:
    """'Type/id' of a Reference's literal reference (relative or absolute on this server)."""
    if isinstance(value, dict):
        ref = value.get("reference")
    elif isinstance(value, str):  # canonical
        ref = value
    else:
        return []
    if not isinstance(ref, str) or ref.startswith("#"):
        return []
    if ref.startswith(base + "/"):
        ref = ref[len(base) + 1:]
    ref = ref.split("/_history/")[0]
    parts = ref.split("/")
    if len(parts) == 2 and re.fullmatch(r"[A-Z][A-Za-z]+", parts[0]):
        return [ref]
    return []


def refs(res: Resource, *paths: str) -> list[str]:
    out: list[str] = []
    for path in paths:
        for v in get(res, path):
            out.extend(reference_targets(v))
    return out


# ---------------------------------------------------------------- dates

MIN = datetime(1, 1, 1, tzinfo=UTC)
MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _add_months(dt: datetime, months: int) -> datetime:
    total = dt.year * 12 + (dt.month - 1) + months
    return dt.replace(year=total // 12, month=total % 12 + 1)


def date_range(text: str, assumed_tz: timezone = UTC) -> tuple[datetime, datetime]:
    """[low, high) of a FHIR date/dateTime/instant, by its precision.

    A value without a time zone is taken in ``assumed_tz`` (tests check their
    premises do not depend on it, see ``tz_robust``).
    """
    m = _DATE.match(text)
    if not m:
        raise ValueError(f"not a FHIR date: {text!r}")
    year, month, day, hh, mi, ss, frac, tz = m.groups()
    tzinfo: timezone = assumed_tz
    if tz == "Z":
        tzinfo = UTC
    elif tz:
        sign = 1 if tz[0] == "+" else -1
        tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    low = datetime(int(year), int(month or 1), int(day or 1), int(hh or 0), int(mi or 0),
                   int(ss or 0), tzinfo=tzinfo)
    if frac:
        micro = int((frac + "000000")[:6])
        low = low.replace(microsecond=micro)
        step = timedelta(microseconds=max(1, 10 ** (6 - min(len(frac), 6))))
        high = low + step
    elif ss is not None:
        high = low + timedelta(seconds=1)
    elif mi is not None:
        high = low + timedelta(minutes=1)
    elif day is not None:
        high = low + timedelta(days=1)
    elif month is not None:
        high = _add_months(low, 1)
    else:
        high = low.replace(year=low.year + 1)
    return low.astimezone(UTC), high.astimezone(UTC)


Range = tuple[datetime, datetime]


def period_range(period: dict[str, Any], assumed_tz: timezone = UTC) -> Range:
    """A Period as a range; a missing start or end is open (an ongoing Period)."""
    low = date_range(period["start"], assumed_tz)[0] if "start" in period else MIN
    high = date_range(period["end"], assumed_tz)[1] if "end" in period else MAX
    return low, high


def timing_range(timing: dict[str, Any], assumed_tz: timezone = UTC) -> Range | None:
    """Timing: only the outer limits matter (events and repeat.boundsPeriod)."""
    ranges = [date_range(e, assumed_tz) for e in timing.get("event", [])]
    bounds = timing.get("repeat", {}).get("boundsPeriod")
    if bounds:
        ranges.append(period_range(bounds, assumed_tz))
    if not ranges:
        return None
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def value_range(value: Any, assumed_tz: timezone = UTC) -> Range | None:
    if isinstance(value, str):
        return date_range(value, assumed_tz)
    if isinstance(value, dict):
        if "start" in value or "end" in value:
            return period_range(value, assumed_tz)
        if "event" in value or "repeat" in value:
            return timing_range(value, assumed_tz)
    return None


def date_prefix_match(prefix: str, search: Range, target: Range,
                      now: datetime | None = None, ap_fraction: float = 0.1) -> bool:
    """The R4 prefix table for ranges (search value range vs. target value range)."""
    low, high = search
    tlow, thigh = target
    contains = low <= tlow and thigh <= high
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":  # the range above the search value intersects the target
        return thigh > high
    if prefix == "lt":
        return tlow < low
    if prefix == "ge":
        return thigh > high or contains
    if prefix == "le":
        return tlow < low or contains
    if prefix == "sa":  # no overlap, and the target lies in the range above
        return tlow >= high
    if prefix == "eb":
        return thigh <= low
    if prefix == "ap":
        now = now or datetime.now(UTC)
        slack = abs(now - low) * ap_fraction
        return tlow < high + slack and thigh > low - slack
    raise ValueError(prefix)


def ambiguous(prefix: str, search: Range, target: Range) -> bool:
    """Targets where readings of ge/le differ (a target straddling one bound and ending inside).

    Tests choose their values so that no target is in this position.
    """
    low, high = search
    tlow, thigh = target
    if prefix == "ge":
        return tlow < low < thigh <= high
    if prefix == "le":
        return low <= tlow < high < thigh
    return False


def split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"):
        return value[:2], value[2:]
    return "eq", value


def date_search(values: Iterable[Any], query: str, assumed_tz: timezone = UTC, **kw: Any) -> bool:
    """Does any of a resource's date-like values match one prefixed search value?

    For ``ne`` the resource matches when no value lies in the search range.
    """
    prefix, text = split_prefix(query)
    search = date_range(text, assumed_tz)
    ranges = [r for r in (value_range(v, assumed_tz) for v in values) if r is not None]
    for r in ranges:
        assert not ambiguous(prefix, search, r), f"test premise: {query} is ambiguous for {r}"
    if prefix == "ne":
        return bool(ranges) and not any(date_prefix_match("eq", search, r) for r in ranges)
    return any(date_prefix_match(prefix, search, r, **kw) for r in ranges)


TZS = [timezone(timedelta(hours=h)) for h in (-6, 0, 6)]


def tz_robust(compute: Callable[[timezone], set[str]]) -> set[str]:
    """The expected ids, asserting they do not depend on the time zone assumed for zoneless values."""
    results = [compute(tz) for tz in TZS]
    assert all(r == results[0] for r in results), "test premise depends on the assumed time zone"
    return results[0]


# ---------------------------------------------------------------- numbers and quantities


def number_range(text: str) -> tuple[Decimal, Decimal]:
    """The implicit range of a number by its significant figures (100 -> [99.5, 100.5))."""
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    return value - half, value + half


def number_match(query: str, target: Decimal) -> bool:
    prefix, text = split_prefix(query)
    q = Decimal(text)
    target = Decimal(target)
    if prefix == "eq":
        low, high = number_range(text)
        return low <= target < high
    if prefix == "ne":
        low, high = number_range(text)
        return not (low <= target < high)
    if prefix in ("gt", "sa"):
        return target > q
    if prefix in ("lt", "eb"):
        return target < q
    if prefix == "ge":
        return target >= q
    if prefix == "le":
        return target <= q
    if prefix == "ap":
        return abs(target - q) <= abs(q) * Decimal("0.1")
    raise ValueError(prefix)


def quantity_match(query: str, quantity: dict[str, Any]) -> bool:
    """value|system|code, value||code (code or unit), or a bare value."""
    if "value" not in quantity:
        return False
    parts = query.split("|")
    number = parts[0]
    if not number_match(number, quantity["value"]):
        return False
    if len(parts) == 1:
        return True
    system, code = parts[1], parts[2]
    if system:
        return quantity.get("system") == system and quantity.get("code") == code
    return code in (quantity.get("code"), quantity.get("unit"))


# ---------------------------------------------------------------- uri


def uri_below(target: str, query: str) -> bool:
    return target == query or target.startswith(query.rstrip("/") + "/")


def uri_above(target: str, query: str) -> bool:
    return uri_below(query, target)
