"""Which Coverage a request is about, and whether a Coverage is in force.

* ``focal_insurance``: a Claim's (or an eligibility request's) ``insurance`` entry to use:
  the one marked ``focal``, else the first. Every place that follows a claim to its
  Coverage (routing, adjudication, the 837P, the 270, an 835's ClaimResponse) asks here.
* ``in_force``: a Coverage is in force on a day when its status is ``active`` and its
  ``period`` (if any) covers the day.
* ``primary_coverage``: of a patient's Coverages, the one a bill claims against: in force
  on the service day, lowest ``order`` first (then the id, to be stable).
* ``lapsed_coverages``: the Coverages whose latest eligibility answer (a
  CoverageEligibilityResponse, from a FHIR payer, a 271 or this server as the payer) says
  not in force or member unknown: a bill leaves them out, whatever their status says.
* ``billed_coverage``: the same choice for a bill, those left out, refusing to guess
  (``CoverageUndecided``) when the patient has active Coverages but none in force on the
  day, or when two or more in force share the lowest ``order`` (or have none): someone
  must check the patient's eligibility. No active Coverage at all: the patient pays.
* ``claim_insurance``: the Claim's ``insurance``: the billed Coverage first (``focal``),
  then the others in force with a higher ``order`` of their own, in that order; and the
  rule that decided, in words, for the Claim to carry.
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


NOT_FOUND = "member-not-found"  # the adjudication-error code of an unknown member


def lapsed_coverages(answers: Iterable[Resource],
                     requests: Mapping[str, Resource]) -> dict[str, str]:
    """``Coverage/[id]`` -> why it is left out, for each Coverage whose latest eligibility
    answer (by ``created``) says not in force or member unknown. ``requests``: the answers'
    CoverageEligibilityRequests by reference, for answers that name no local Coverage."""
    latest: dict[str, tuple[str, Resource, dict[str, Any]]] = {}
    for answer in answers:
        for entry in answer.get("insurance") or [{}]:
            ref = str((entry.get("coverage") or {}).get("reference", ""))
            if not ref.startswith("Coverage/"):
                asked = requests.get(str((answer.get("request") or {}).get("reference", "")))
                ref = str((focal_coverage_ref(asked or {}) or {}).get("reference", ""))
            created = str(answer.get("created", ""))
            if ref.startswith("Coverage/") and created >= latest.get(ref, ("",))[0]:
                latest[ref] = (created, answer, entry)
    lapsed: dict[str, str] = {}
    for ref, (created, answer, entry) in latest.items():
        unknown = any(c.get("code") == NOT_FOUND for e in answer.get("error") or []
                      for c in (e.get("code") or {}).get("coding") or [])
        if unknown or entry.get("inforce") is False:
            lapsed[ref] = (f"its latest eligibility answer, CoverageEligibilityResponse/"
                           f"{str(answer.get('id'))[:64]} of {created[:32]}, says "
                           + ("member not found" if unknown else "not in force"))
    return lapsed


def billed_coverage(coverages: Iterable[Resource], on: date,
                    lapsed: Mapping[str, str] | None = None) -> Resource | None:
    """The Coverage a bill of ``on`` claims against (None: the patient has no active
    Coverage, and pays). ``lapsed`` (``lapsed_coverages``) are left out.
    ``CoverageUndecided`` when it cannot be chosen without a guess."""
    lapsed = lapsed or {}
    every = sorted((c for c in coverages if c.get("status") == "active"),
                   key=lambda c: str(c["id"]))
    active = [c for c in every if f"Coverage/{c['id']}" not in lapsed]
    if every and not active:
        focus = every[0]
        raise _undecided(
            "Every active Coverage of the patient is left out: "
            + "; ".join(f"Coverage/{str(c['id'])[:64]}: {lapsed['Coverage/' + c['id']]}"
                        for c in every[:5])
            + ". Check the patient's eligibility again, or correct or cancel the Coverage "
            "(cancelled, the patient is billed), then retry", focus)
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


def claim_insurance(billed: Resource, coverages: Iterable[Resource], on: date,
                    lapsed: Mapping[str, str] | None = None
                    ) -> tuple[list[dict[str, Any]], str]:
    """The Claim's ``insurance`` (``billed`` first, ``focal``; then each other Coverage in
    force on ``on`` whose ``order`` is higher and its own, in that order) and why, in words."""
    lapsed = lapsed or {}
    others = [c for c in coverages if c.get("status") == "active" and c["id"] != billed["id"]
              and in_force(c, on) and f"Coverage/{c['id']}" not in lapsed]
    orders = [_order(c) for c in others]
    after = sorted((c for c in others if _order(billed) < _order(c) < NO_ORDER
                    and orders.count(_order(c)) == 1), key=_order)
    unplaced = [c for c in others if c not in after]
    chosen = [billed, *after]
    insurance = [{"sequence": n, "focal": n == 1,
                  "coverage": {"reference": f"Coverage/{c['id']}"}}
                 for n, c in enumerate(chosen, 1)]
    first = (f"Coverage/{str(billed['id'])[:64]} is billed first"
             + (f": order {billed['order']}" if "order" in billed else "")
             + f", in force on {on.isoformat()}")
    if not others and not lapsed:
        first += ", the only Coverage in force"
    parts = [first]
    parts += [f"then Coverage/{str(c['id'])[:64]} (order {c['order']})" for c in after]
    parts += [f"left out: Coverage/{str(c['id'])[:64]} (no order of its own after the "
              "billed one)" for c in unplaced]
    parts += [f"left out: {ref[:73]} ({why})" for ref, why in sorted(lapsed.items())]
    return insurance, "; ".join(parts)


def _refs(coverages: list[Resource]) -> str:
    shown = ", ".join(f"Coverage/{str(c['id'])[:64]}" for c in coverages[:5])
    return shown + (f" and {len(coverages) - 5} more" if len(coverages) > 5 else "")


def _undecided(reason: str, focus: Resource) -> CoverageUndecided:
    error = CoverageUndecided(reason, expression=["Coverage.order", "Coverage.period"],
                              code="business-rule")
    error.focus = f"Coverage/{focus['id']}"
    return error


def with_authorizations(insurance: list[dict[str, Any]], answers: Iterable[Resource],
                        on: date) -> list[dict[str, Any]]:
    """``insurance`` with each entry's ``preAuthRef``: the authorization numbers of the
    complete prior authorization answers (ClaimResponses of ``use`` preauthorization) about
    its Coverage, valid on ``on`` (``preAuthPeriod``, when they give one)."""
    refs: dict[str, list[str]] = {}
    for answer in answers:
        if answer.get("use") != "preauthorization" or answer.get("outcome") != "complete" \
                or not answer.get("preAuthRef"):
            continue
        period = answer.get("preAuthPeriod") or {}
        start, end = period.get("start"), period.get("end")
        if (start and day_of(str(start)) > on) or (end and day_of(str(end), last=True) < on):
            continue
        for entry in answer.get("insurance") or []:
            ref = str((entry.get("coverage") or {}).get("reference", ""))
            if str(answer["preAuthRef"]) not in refs.get(ref, []):
                refs.setdefault(ref, []).append(str(answer["preAuthRef"]))
    return [{**entry, "preAuthRef": refs[ref]} if (ref := str(
        (entry.get("coverage") or {}).get("reference", ""))) in refs else entry
        for entry in insurance]
