"""History paging, written once (``storage/history.py``): the plan of a listing's page
and the cut of what an engine read into the page and the next cursor. Pure: the engines'
listings are tested end to end in tests/api/test_history.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir_server.storage.history import HistoryCursor, HistoryPlan
from fhir_server.storage.model import StoredVersion
from fhir_server.storage.repository import history_key

START = datetime(2026, 1, 1, tzinfo=UTC)


def versions(n: int) -> list[tuple[StoredVersion, str]]:
    """n versions of Patient/a, newest first, each with its key."""
    out = []
    for v in range(n, 0, -1):
        stored = StoredVersion(type_="Patient", id_="a", version=v,
                               last_updated=START + timedelta(seconds=v), text="{}", method="PUT")
        out.append((stored, history_key("Patient", "a", v)))
    return out


def test_a_first_page_is_as_of_now_and_excludes_only_across_types() -> None:
    before = datetime.now(UTC)
    plan = HistoryPlan.of(type_=None, id_=None, since=None, at=None, count=5, cursor=None,
                          exclude_types=frozenset({"B", "A"}))
    assert before - timedelta(milliseconds=1) <= plan.as_of <= datetime.now(UTC)
    assert plan.as_of.microsecond % 1000 == 0  # the precision every engine keeps
    assert (plan.after, plan.excluded, plan.limit) == (None, ("A", "B"), 6)
    typed = HistoryPlan.of(type_="Patient", id_=None, since=None, at=None, count=5,
                           cursor=None, exclude_types=frozenset({"A"}))
    assert typed.excluded == ()  # a type's own listing excludes nothing


def test_a_later_page_continues_after_the_cursor() -> None:
    cursor = HistoryCursor(as_of=START, ts=START + timedelta(seconds=3), key="Patient/a/3")
    plan = HistoryPlan.of(type_="Patient", id_="a", since=None, at=None, count=2,
                          cursor=cursor, exclude_types=frozenset())
    assert plan.as_of == START and plan.after == (cursor.ts, "Patient/a/3")


def test_the_page_is_cut_with_a_cursor_only_when_more_follow() -> None:
    plan = HistoryPlan(as_of=START, count=2)
    read = versions(3)  # limit = count + 1 read: one more follows
    page = plan.page(total=7, rows=read)
    assert [v.version for v in page.versions] == [3, 2] and page.total == 7
    last = read[1][0]
    assert page.next_cursor == HistoryCursor(as_of=START, ts=last.last_updated,
                                             key=history_key("Patient", "a", 2))
    end = plan.page(total=2, rows=versions(2))
    assert [v.version for v in end.versions] == [2, 1] and end.next_cursor is None
