"""Parsing search query parameters: names, modifiers, chains, prefixes and escaped values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid

RESULT_PARAMETERS = frozenset({
    "_count", "_sort", "_total", "_summary", "_elements", "_include", "_revinclude",
    "_format", "_pretty", "_page", "_offset", "_contained", "_containedType",
})
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
WHOLE_NUMBER = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only; int() of it cannot fail
_PREFIXED = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[-+0-9.])")
# Bounds on one parameter, so that no query outgrows what an engine can run (a 400 that
# names the limit, never a 500): values OR'ed in it, references a chain follows, and
# _has nested in _has.
MAX_VALUES = 100
MAX_CHAIN = 4
MAX_HAS_NESTING = 2


@dataclass(frozen=True)
class Criterion:
    """One query parameter: ``name[:modifier][.chain]=v1,v2`` (values are OR'ed)."""

    raw_name: str
    name: str
    modifier: str | None
    chain: str | None  # the rest after the first '.', e.g. "name" in subject:Patient.name
    values: tuple[str, ...]
    has: tuple[str, ...] = field(default=())  # _has:Type:param:rest -> (Type, param, rest)


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash; unescape \\, \\$ \\| \\\\ afterwards."""
    out: list[str] = []
    current = ""
    escaped = False
    for ch in raw:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            out.append(current)
            current = ""
        else:
            current += ch
    if escaped:
        current += "\\"
    out.append(current)
    return out


def unescape(value: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", value)


def split_unescaped(value: str, sep: str) -> list[str]:
    """Split on a separator ('|' or '$') that is not escaped; each part unescaped."""
    parts = re.split(rf"(?<!\\)\{sep}", value)
    return [unescape(p) for p in parts]


def prefix_of(value: str) -> tuple[str, str]:
    match = _PREFIXED.match(value)
    if match:
        return match.group(1), value[2:]
    return "eq", value


def criteria_of(params: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[Criterion]:
    """The search criteria among query parameters (result parameters, modified or not, left out)."""
    return [parse_criterion(k, v) for k, v in params
            if k.split(":", 1)[0] not in RESULT_PARAMETERS]


def parse_criterion(name: str, raw: str) -> Criterion:
    values = tuple(split_values(raw))
    _check_bounds(name, values)
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        return Criterion(raw_name=name, name="_has", modifier=None, chain=None, values=values,
                         has=tuple(parts[1:]))
    head, dot, chain = name.partition(".")
    base, colon, modifier = head.partition(":")
    return Criterion(raw_name=name, name=base, modifier=modifier if colon else None,
                     chain=chain if dot else None, values=values)


def _check_bounds(name: str, values: tuple[str, ...]) -> None:
    if len(values) > MAX_VALUES:
        raise Invalid(f"A search parameter may have at most {MAX_VALUES} values "
                      f"(comma-separated); {name} has {len(values)}", expression=[name])
    nesting = name.count("_has:")
    if nesting > MAX_HAS_NESTING:
        raise Invalid(f"_has may be nested {MAX_HAS_NESTING} deep at most; {name} nests "
                      f"{nesting}", expression=[name])
    if nesting == 0 and name.count(".") > MAX_CHAIN:
        raise Invalid(f"A chain may follow {MAX_CHAIN} references at most; {name} follows "
                      f"{name.count('.')}", expression=[name])


def parse_count(raw: str | None, settings: Settings) -> int:
    """_count: a whole number, capped at FHIR_MAX_COUNT; absent means FHIR_DEFAULT_COUNT."""
    if raw is None:
        return settings.fhir_default_count
    if not WHOLE_NUMBER.match(raw):
        raise Invalid(f"_count must be a whole number from 0 to {settings.fhir_max_count}",
                      expression=["_count"])
    return min(int(raw), settings.fhir_max_count)
