"""FHIR date, dateTime and instant values as ranges of instants.

A value denotes the whole span its precision implies: ``2024`` is
[2024-01-01T00:00Z, 2025-01-01T00:00Z). Values without a time zone are
taken as UTC (the specification leaves the zone to the server).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from fhir_server.errors import Invalid

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _add_months(ts: datetime, months: int) -> datetime:
    index = ts.month - 1 + months
    return ts.replace(year=ts.year + index // 12, month=index % 12 + 1)


def date_range(value: str, *, param: str = "date") -> tuple[datetime, datetime]:
    """[low, high) of a FHIR date/dateTime/instant string; 400 when malformed."""
    match = _DATE.match(value.strip())
    if not match:
        raise Invalid(f"'{value[:40]}' is not a valid FHIR date or dateTime", expression=[param])
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
            frac = g["f"]
            low = low.replace(microsecond=int(frac[:6].ljust(6, "0")))
            high = low + timedelta(microseconds=10 ** max(0, 6 - len(frac)))
        elif g["S"]:
            high = low + timedelta(seconds=1)
        elif g["M"]:
            high = low + timedelta(minutes=1)
        elif g["d"]:
            high = low + timedelta(days=1)
        elif g["m"]:
            high = _add_months(low, 1)
        else:
            high = low.replace(year=low.year + 1)
    except ValueError:
        raise Invalid(f"'{value[:40]}' is not a valid FHIR date or dateTime",
                      expression=[param]) from None
    return low.astimezone(UTC), high.astimezone(UTC)
