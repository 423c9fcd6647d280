"""Normal forms of search values, shared by indexing and querying."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

# A system or code may hold any character; '|' separates them in stored keys.
SEP = "|"
ANY_SYSTEM = "*"
LOWEST = datetime(1, 1, 1, tzinfo=UTC)
HIGHEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_SPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Zoë  Müller' -> 'zoe muller'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", stripped.casefold()).strip()


def key(param: str, *parts: str) -> str:
    return SEP.join((param, *parts))


def token_keys(param: str, system: str | None, code: str | None) -> list[str]:
    """Stored keys of one token: exact, code in any system, and any code of the system."""
    out: list[str] = []
    if code:
        out.append(key(param, system or "", code))
        out.append(key(param, ANY_SYSTEM, code))
    if system:
        out.append(key(param, system, ""))
    return out


def bson_number(value: Decimal | int | float) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return float(value)


def decimal_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit range of a decimal's precision: 100 -> [99.5, 100.5), 1.50 -> [1.495, 1.505)."""
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb((exponent if isinstance(exponent, int) else 0) - 1)
    return value - half, value + half
