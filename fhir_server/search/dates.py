"""FHIR date, dateTime and instant values as ranges of instants.

A value denotes the whole span its precision implies: ``2024`` is
[2024-01-01T00:00Z, 2025-01-01T00:00Z). Values without a time zone are
taken as UTC (the specification leaves the zone to the server).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from fhir_server.core.errors import Invalid

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def now_ms() -> datetime:
    """The current instant at the precision every engine keeps (milliseconds, as BSON dates)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _add_months(ts: datetime, months: int) -> datetime:
    index = ts.month - 1 + months
    return ts.replace(year=ts.year + index // 12, month=index % 12 + 1)


def date_range(value: str, *, param: str = "date") -> tuple[datetime, datetime]:
    """[low, high) of a FHIR date/dateTime/instant string; 400 when malformed.

    Instants beyond what Python represents (year 9999 in a far zone) are held at
    the representable bounds rather than failing.
    """
    match = _DATE.match(value.strip())
    if not match:
        raise Invalid(f"The {param} value is not a valid FHIR date or dateTime", expression=[param])
    g = match.groupdict()
    try:
        tz: timezone = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        low = datetime(int(g["y"]), int(g["m"] or 1), int(g["d"] or 1), int(g["H"] or 0),
                       int(g["M"] or 0), int(g["S"] or 0), tzinfo=tz)
        if g["f"]:
            low = low.replace(microsecond=int(g["f"][:6].ljust(6, "0")))
    except ValueError:
        raise Invalid(f"The {param} value is not a valid FHIR date or dateTime",
                      expression=[param]) from None
    return _clamp(low), _clamp(_high(low, g))


def _high(low: datetime, g: dict[str, str | None]) -> datetime:
    """The exclusive end of the span a value's precision implies (capped at the maximum)."""
    try:
        if g["f"]:
            return low + timedelta(microseconds=10 ** max(0, 6 - len(g["f"])))
        if g["S"]:
            return low + timedelta(seconds=1)
        if g["M"]:
            return low + timedelta(minutes=1)
        if g["d"]:
            return low + timedelta(days=1)
        if g["m"]:
            return _add_months(low, 1)
        return low.replace(year=low.year + 1)
    except (ValueError, OverflowError):
        return datetime.max.replace(tzinfo=low.tzinfo)


def _clamp(ts: datetime) -> datetime:
    """UTC, held within the instants Python can represent (years 1 to 9999)."""
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        bound = datetime.min if ts.year < 5000 else datetime.max
        return bound.replace(tzinfo=UTC)
