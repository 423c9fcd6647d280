"""Where and in which language a patient is written to, read from the Patient resource.

* email: a ``telecom`` with system ``email``;
* sms: a ``telecom`` with system ``sms``, or ``phone`` with use ``mobile``;

of those whose ``period`` (if any) holds now, the lowest ``rank`` first (a ContactPoint
without a rank comes after the ranked ones, in the order written). The language is the
``communication`` marked ``preferred``: its first code's primary subtag (``es-MX`` is
``es``); a language without templates falls back to English (``templates.py``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

Resource = dict[str, Any]
CHANNEL_SYSTEMS = {"email": ("email",), "sms": ("sms", "phone")}
DEFAULT_LANGUAGE = "en"


def _moment(text: object, *, end: bool) -> datetime | None:
    """A FHIR date or dateTime as an aware instant (a date alone: its start, or for an end
    the start of the next day, in UTC); None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")] + [1, 1]
            day = date(parts[0], parts[1], parts[2])
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return _next_day(moment) if end else moment
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _next_day(moment: datetime) -> datetime:
    return datetime.fromordinal(moment.toordinal() + 1).replace(tzinfo=UTC)


def active(period: object, now: datetime) -> bool:
    """Whether a FHIR Period (absent: always) holds at ``now``."""
    if not isinstance(period, dict):
        return True
    start, end = _moment(period.get("start"), end=False), _moment(period.get("end"), end=True)
    return (start is None or start <= now) and (end is None or now < end)


def _fits(point: Resource, channel: str) -> bool:
    system = point.get("system")
    if channel == "sms" and system == "phone":
        return point.get("use") == "mobile"
    return system in CHANNEL_SYSTEMS[channel]


def address(patient: Resource, channel: str, *, now: datetime) -> str | None:
    """The patient's address on a channel (``email`` or ``sms``), or None."""
    points = [(i, p) for i, p in enumerate(patient.get("telecom") or [])
              if isinstance(p, dict) and isinstance(p.get("value"), str) and p["value"].strip()
              and _fits(p, channel) and active(p.get("period"), now)]
    if not points:
        return None

    def order(item: tuple[int, Resource]) -> tuple[int, int, int]:
        rank = item[1].get("rank")
        if isinstance(rank, int) and not isinstance(rank, bool):
            return (0, rank, item[0])
        return (1, 0, item[0])

    return str(min(points, key=order)[1]["value"]).strip()


def language(patient: Resource) -> str:
    """The patient's preferred language's primary subtag (lower case), or English."""
    for entry in patient.get("communication") or []:
        if not isinstance(entry, dict) or entry.get("preferred") is not True:
            continue
        for coding in (entry.get("language") or {}).get("coding") or []:
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code:
                return code.split("-")[0].lower()
    return DEFAULT_LANGUAGE
