"""Date search: every prefix, precision as a range, Period (open-ended), instant, Timing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timezone
from typing import Any

import httpx
import pytest

from tests.search.data import Loaded, search_ids, store
from tests.search.expect import date_search, get, select, tz_robust

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


def expected_ids(data: dict[str, dict], values: Callable[[dict], list[Any]], *queries: str,
                 **kw: Any) -> set[str]:
    """Ids matching every query (AND), checked not to depend on the zone of zoneless values."""
    def compute(tz: timezone) -> set[str]:
        return select(data, lambda r: all(date_search(values(r), q, tz, **kw) for q in queries))
    return tz_robust(compute)


def birth(p: dict) -> list[Any]:
    return get(p, "birthDate")


def period(e: dict) -> list[Any]:
    return get(e, "period")


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_birthdate_prefixes_on_a_day(syn: Loaded, prefix: str) -> None:
    pats = syn.data["Patient"]
    day = "1978-05-12"  # one patient's birth date: eq/ge/le include it, gt/lt/sa/eb do not
    assert any(p["birthDate"] == day for p in pats.values())
    expected = expected_ids(pats, birth, prefix + day)
    assert await search_ids(syn.client, "Patient", {"birthdate": prefix + day}) == expected


@pytest.mark.parametrize("value", ["1927-05-21", "1960", "2007-07", "1960-04", "1961", "1927-05-22"])
async def test_birthdate_precision(syn: Loaded, value: str) -> None:
    pats = syn.data["Patient"]
    expected = expected_ids(pats, birth, value)
    assert await search_ids(syn.client, "Patient", {"birthdate": value}) == expected
    assert await search_ids(syn.client, "Patient", {"birthdate": "eq" + value}) == expected


@pytest.mark.parametrize("prefix", ["gt", "lt", "ge", "le", "sa", "eb", "ne"])
async def test_birthdate_prefixes_on_a_year(syn: Loaded, prefix: str) -> None:
    pats = syn.data["Patient"]
    expected = expected_ids(pats, birth, prefix + "1960")
    assert 0 < len(expected) < len(pats)
    assert await search_ids(syn.client, "Patient", {"birthdate": prefix + "1960"}) == expected


async def test_birthdate_ap(syn: Loaded) -> None:
    """ap: about 10% of the gap between now and the value; the premise holds from 8% to 12%."""
    pats = syn.data["Patient"]
    for value in ("1980-01-01", "2010", "1925"):
        sets = [expected_ids(pats, birth, "ap" + value, ap_fraction=f) for f in (0.08, 0.1, 0.12)]
        assert sets[0] == sets[1] == sets[2], value
        assert await search_ids(syn.client, "Patient", {"birthdate": "ap" + value}) == sets[1], value


async def test_date_or_and(syn: Loaded) -> None:
    pats = syn.data["Patient"]
    expected = tz_robust(lambda tz: select(pats, lambda p: date_search(birth(p), "1960", tz)
                                           or date_search(birth(p), "2011", tz)))
    assert len(expected) == 3
    assert await search_ids(syn.client, "Patient", {"birthdate": "1960,2011"}) == expected
    expected = expected_ids(pats, birth, "ge1960", "lt1990")
    got = await search_ids(syn.client, "Patient", [("birthdate", "ge1960"), ("birthdate", "lt1990")])
    assert got == expected


@pytest.mark.parametrize("query", ["1989", "lt1990-01-01", "ge1994-11-11T22:58:16-05:00",
                                   "gt1994-11-11T22:58:15-05:00", "eq1971-10-01T17:44:40Z",
                                   "ne1971-10-01T13:44:40-04:00"])
async def test_death_date_with_zones(syn: Loaded, query: str) -> None:
    pats = syn.data["Patient"]
    expected = expected_ids(pats, lambda p: get(p, "deceasedDateTime"), query)
    assert expected
    assert await search_ids(syn.client, "Patient", {"death-date": query}) == expected


@pytest.mark.parametrize("query", [
    "2015", "2017-03", "eq2021-03", "ne2015", "gt2022-06-01", "lt1930", "ge2023-01", "le1929",
    "sa2023-01-01", "eb1929-01-01", "gt2019-06-01T10:00:00Z", "lt1989-10-04T06:20:16-04:00",
    "ge1989-10-04T02:25:16-04:00", "le2000-03-05T12:00:00+01:00",
])
async def test_encounter_period(syn: Loaded, query: str) -> None:
    encs = syn.data["Encounter"]
    expected = expected_ids(encs, period, query)
    assert expected, query
    assert await search_ids(syn.client, "Encounter", {"date": query, "_count": "1000"}) == expected


async def test_encounter_period_and(syn: Loaded) -> None:
    encs = syn.data["Encounter"]
    expected = expected_ids(encs, period, "ge2016-03", "lt2016-09")
    assert expected
    got = await search_ids(syn.client, "Encounter",
                           [("date", "ge2016-03"), ("date", "lt2016-09"), ("_count", "1000")])
    assert got == expected


OPEN = {"Encounter": {
    "ongoing": {"resourceType": "Encounter", "id": "ongoing", "status": "in-progress",
                "class": {"code": "AMB"}, "period": {"start": "2020-01-10T08:00:00Z"}},
    "ended": {"resourceType": "Encounter", "id": "ended", "status": "finished",
              "class": {"code": "AMB"}, "period": {"end": "1999-12-31"}},
    "closed": {"resourceType": "Encounter", "id": "closed", "status": "finished",
               "class": {"code": "AMB"},
               "period": {"start": "2020-01-10T08:00:00Z", "end": "2020-01-12T08:00:00Z"}},
    "day": {"resourceType": "Encounter", "id": "day", "status": "finished",
            "class": {"code": "AMB"}, "period": {"start": "2020-01-11", "end": "2020-01-11"}},
    "noperiod": {"resourceType": "Encounter", "id": "noperiod", "status": "planned",
                 "class": {"code": "AMB"}},
}}


async def test_open_ended_periods(client: httpx.AsyncClient) -> None:
    await store(client, OPEN)
    encs = OPEN["Encounter"]
    for query in ("gt2100-01-01", "ge2030", "lt1900", "2020-01-11", "2020-01", "sa2020-01-09",
                  "eb2020-01-13", "le2020-01-10T07:00:00Z", "ne2020-01", "2020", "ap2020-01-11"):
        expected = expected_ids(encs, period, query)
        assert await search_ids(client, "Encounter", {"date": query}) == expected, query
    # the premise: an ongoing period extends into the future
    assert expected_ids(encs, period, "gt2100-01-01") == {"ongoing"}
    assert expected_ids(encs, period, "lt1900") == {"ended"}


TIMED = {"ServiceRequest": {
    "timing": {"resourceType": "ServiceRequest", "id": "timing", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/x"},
               "occurrenceTiming": {"event": ["2021-03-01T09:00:00Z", "2021-03-15T09:00:00Z"]}},
    "bounded": {"resourceType": "ServiceRequest", "id": "bounded", "status": "active",
                "intent": "order", "subject": {"reference": "Patient/x"},
                "occurrenceTiming": {"repeat": {"boundsPeriod": {"start": "2021-05-01",
                                                                 "end": "2021-05-31"},
                                                "frequency": 1, "period": 1, "periodUnit": "d"}}},
    "instant": {"resourceType": "ServiceRequest", "id": "instant", "status": "active",
                "intent": "order", "subject": {"reference": "Patient/x"},
                "occurrenceDateTime": "2021-03-07T10:11:12.345Z"},
    "period": {"resourceType": "ServiceRequest", "id": "period", "status": "active",
               "intent": "order", "subject": {"reference": "Patient/x"},
               "occurrencePeriod": {"start": "2021-02-20", "end": "2021-03-02"}},
}}


async def test_timing_and_precise_datetimes(client: httpx.AsyncClient) -> None:
    await store(client, TIMED)
    srs = TIMED["ServiceRequest"]

    def occurrence(r: dict) -> list[Any]:
        return [r[k] for k in ("occurrenceTiming", "occurrenceDateTime", "occurrencePeriod") if k in r]

    for query in ("2021-03", "2021-03-07", "2021-03-07T10:11:12Z", "gt2021-03-10", "lt2021-03-01",
                  "ge2021-03-10", "sa2021-03-05", "sa2021-02-28", "eb2021-05-01", "2021-05", "2021",
                  "le2021-02-25"):
        expected = expected_ids(srs, occurrence, query)
        assert await search_ids(client, "ServiceRequest", {"occurrence": query}) == expected, query
    assert expected_ids(srs, occurrence, "2021-03") == {"instant", "timing"}


async def test_instant_parameter(client: httpx.AsyncClient) -> None:
    data = {"Observation": {
        f"o{i}": {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                  "code": {"text": "t"}, "effectiveInstant": value}
        for i, value in enumerate(["2022-06-30T23:59:59.999Z", "2022-07-01T00:00:00.000Z",
                                   "2022-07-01T01:30:00+02:00", "2022-07-15T12:00:00Z"])}}
    await store(client, data)
    obs = data["Observation"]
    for query in ("2022-07-15", "ge2022-07-01T00:00:00Z", "lt2022-07-01T00:00:00Z",
                  "2022-06-30T23:59:59Z", "gt2022-06-30T23:45:00Z", "2022-06-30T23:30:00Z",
                  "sa2022-07-01T00:00:00.000Z", "le2022-07-01T00:00:00+00:00"):
        expected = expected_ids(obs, lambda o: get(o, "effectiveInstant"), query)
        assert await search_ids(client, "Observation", {"date": query}) == expected, query
