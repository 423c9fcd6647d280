"""Which Coverage a request is about, and whether a Coverage is in force.

* ``focal_insurance``: a Claim's (or an eligibility request's) ``insurance`` entry to use:
  the one marked ``focal``, else the first. Every place that follows a claim to its
  Coverage (routing, adjudication, the 837P, the 270, an 835's ClaimResponse) asks here.
* ``in_force``: a Coverage is in force on a day when its status is ``active`` and its
  ``period`` (if any) covers the day.
* ``primary_coverage``: of a patient's Coverages, the one a bill claims against: in force
  on the service day, lowest ``order`` first (then the id, to be stable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

Resource = dict[str, Any]


def focal_insurance(request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The focal ``insurance`` entry (else the first; None when there is none)."""
    insurance = [i for i in request.get("insurance") or [] if isinstance(i, dict)]
    return next((i for i in insurance if i.get("focal")), insurance[0] if insurance else None)


def focal_coverage_ref(request: Mapping[str, Any]) -> Any:
    """The focal insurance's ``coverage`` Reference (None when absent)."""
    return (focal_insurance(request) or {}).get("coverage")


def day_of(value: str, *, last: bool = False) -> date:
    """The day a FHIR date or dateTime stands for; a partial date (``2026``,
    ``2026-11``) is its first day, or with ``last`` its last day, as a Period's end."""
    if "T" in value:
        return datetime.fromisoformat(value).date()
    parts = [int(p) for p in value.split("-")]
    if len(parts) == 3:
        return date(*parts)
    if len(parts) == 2:
        first = date(parts[0], parts[1], 1)
        if not last:
            return first
        following = date(parts[0] + (parts[1] == 12), parts[1] % 12 + 1, 1)
        return following - timedelta(days=1)
    return date(parts[0], 12, 31) if last else date(parts[0], 1, 1)


def in_force(coverage: Mapping[str, Any], on: date) -> bool:
    if coverage.get("status") != "active":
        return False
    period = coverage.get("period") or {}
    try:
        start = day_of(period["start"]) if period.get("start") else None
        end = day_of(period["end"], last=True) if period.get("end") else None
    except (TypeError, ValueError):
        return False  # a period this server cannot read proves nothing
    return not ((start and start > on) or (end and end < on))


def primary_coverage(coverages: Iterable[Resource], on: date) -> Resource | None:
    """The Coverage in force on ``on`` with the lowest ``order`` (None: none in force)."""
    usable = [c for c in coverages if in_force(c, on)]
    usable.sort(key=lambda c: (int(c.get("order", 1 << 30)), str(c["id"])))
    return usable[0] if usable else None
