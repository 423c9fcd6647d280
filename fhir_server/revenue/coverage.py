"""Which Coverage a request is about, and whether a Coverage is in force.

* ``focal_insurance``: a Claim's (or an eligibility request's) ``insurance`` entry to use:
  the one marked ``focal``, else the first. Every place that follows a claim to its
  Coverage (routing, adjudication, the 837P, the 270, an 835's ClaimResponse) asks here.
* ``in_force``: a Coverage is in force on a day when its status is ``active`` and its
  ``period`` (if any) covers the day.
* ``primary_coverage``: of a patient's Coverages, the one a bill claims against: in force
  on the service day, lowest ``order`` first (then the id, to be stable).
* ``billed_coverage``: the same choice for a bill, refusing to guess
  (``CoverageUndecided``) when the patient has active Coverages but none in force on the
  day, or when two or more in force share the lowest ``order`` (or have none): someone
  must check the patient's eligibility. No active Coverage at all: the patient pays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from fhir_server.core.errors import Unprocessable

Resource = dict[str, Any]
NO_ORDER = 1 << 30  # a Coverage without ``order`` comes after every one with it


class CoverageUndecided(Unprocessable):
    """No Coverage can be chosen for a bill without a guess; ``focus`` is the Coverage in
    question (Coverage/[id])."""

    focus: str = ""


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
    usable.sort(key=lambda c: (_order(c), str(c["id"])))
    return usable[0] if usable else None


def _order(coverage: Mapping[str, Any]) -> int:
    return int(coverage.get("order", NO_ORDER))


def billed_coverage(coverages: Iterable[Resource], on: date) -> Resource | None:
    """The Coverage a bill of ``on`` claims against (None: the patient has no active
    Coverage, and pays). ``CoverageUndecided`` when it cannot be chosen without a guess."""
    active = sorted((c for c in coverages if c.get("status") == "active"),
                    key=lambda c: str(c["id"]))
    if not active:
        return None
    chosen = primary_coverage(active, on)
    if chosen is None:
        ended = [c for c in active if str((c.get("period") or {}).get("end", ""))]
        focus = max(ended, key=lambda c: str(c["period"]["end"])) if ended else active[0]
        period = focus.get("period") or {}
        raise _undecided(
            f"The patient has active Coverage ({_refs(active)}) but none is in force on "
            f"{on.isoformat()} (Coverage/{str(focus['id'])[:64]}: period "
            f"{str(period.get('start', 'open'))[:32]} to {str(period.get('end', 'open'))[:32]}"
            "): check the patient's eligibility, then correct the Coverage's period, or set "
            "its status to cancelled to bill the patient, then retry", focus)
    tied = [c for c in active if in_force(c, on) and _order(c) == _order(chosen)]
    if len(tied) > 1:
        raise _undecided(
            f"{_refs(tied)} are all in force on {on.isoformat()} and no order tells which "
            "to bill first: check the patient's eligibility, then set each Coverage's order "
            "(1 = primary) or end the one that no longer applies, then retry", chosen)
    return chosen


def _refs(coverages: list[Resource]) -> str:
    shown = ", ".join(f"Coverage/{str(c['id'])[:64]}" for c in coverages[:5])
    return shown + (f" and {len(coverages) - 5} more" if len(coverages) > 5 else "")


def _undecided(reason: str, focus: Resource) -> CoverageUndecided:
    error = CoverageUndecided(reason, expression=["Coverage.order", "Coverage.period"],
                              code="business-rule")
    error.focus = f"Coverage/{focus['id']}"
    return error
