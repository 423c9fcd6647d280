"""This server as the payer: finding the member's Coverage and naming it in an answer.

A request names a Coverage that may be the clinic's copy (contained, from another
server) or this server's own. The payer-side Coverage is this server's Coverage
found by one of the request Coverage's identifiers, or by its ``subscriberId``
with the same payor (the payor Organization matched by reference on this server
or by identifier). Whether it is in force on a date: ``revenue/coverage.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.revenue.coverage import day_of
from fhir_server.revenue.records import Resolver, Resource, identifier_keys, ref
from fhir_server.service import interactions as svc
from fhir_server.service.criteria import search_token
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import ADJUDICATION_ERROR


@dataclass(frozen=True)
class Member:
    """The payer-side Coverage found for a request (None when the member is unknown)."""

    coverage: Resource | None
    payer: Resource | None  # this server's Organization for the payor, when known

    @property
    def reference(self) -> str | None:
        return None if self.coverage is None else f"Coverage/{self.coverage['id']}"


def error_code(code: str, display: str) -> dict[str, Any]:
    return {"code": {"coding": [{"system": ADJUDICATION_ERROR, "code": code,
                                 "display": display}]}}


async def local_payer(repo: Repository, settings: Settings, resolver: Resolver,
                      payor: Any) -> Resource | None:
    organization, local = await resolver.get(payor, "Organization")
    if organization is not None and local is not None:
        return organization
    for system, value in identifier_keys(organization):
        found = await svc.find_resources(repo=repo, settings=settings, type_="Organization",
                                         criteria=[("identifier", search_token(system, value))],
                                         limit=2)
        if len(found) == 1:
            return found[0]
    return None


async def find_member(repo: Repository, settings: Settings, resolver: Resolver,
                      coverage_ref: Any) -> Member:
    coverage, local = await resolver.get(coverage_ref, "Coverage")
    if coverage is None:
        return Member(None, None)
    payors = coverage.get("payor") or []
    payer = await local_payer(repo, settings, resolver, payors[0]) if payors else None
    if local is not None:
        return Member(coverage, payer)  # this server's own Coverage: it is the payer's record
    payer_ref = None if payer is None else f"Organization/{payer['id']}"
    for system, value in identifier_keys(coverage):
        found = await svc.find_resources(repo=repo, settings=settings, type_="Coverage",
                                         criteria=[("identifier", search_token(system, value))],
                                         limit=10)
        mine = [c for c in found if payer_ref is None or _pays(c, payer_ref)]
        if len(mine) == 1:
            return Member(mine[0], payer)
    subscriber = coverage.get("subscriberId")
    if subscriber and payer_ref is not None:
        found = await svc.find_resources(repo=repo, settings=settings, type_="Coverage",
                                         criteria=[("subscriberid", search_token(None, subscriber)),
                                                   ("payor", payer_ref)], limit=10)
        mine = [c for c in found if c.get("subscriberId") == subscriber]
        if len(mine) == 1:
            return Member(mine[0], payer)
    return Member(None, payer)


def _pays(coverage: Resource, payer_ref: str) -> bool:
    return any((p or {}).get("reference") == payer_ref for p in coverage.get("payor") or [])


def service_date(resource: Resource, *, fallback: date) -> date:
    """The date a request is about (servicedDate, the start of servicedPeriod, billablePeriod)."""
    for value in (resource.get("servicedDate"),
                  (resource.get("servicedPeriod") or {}).get("start"),
                  (resource.get("billablePeriod") or {}).get("start")):
        if isinstance(value, str):
            try:
                return day_of(value)
            except ValueError:
                continue
    return fallback


def claim_service_date(claim: Resource, *, fallback: date) -> date:
    """A claim's date of service: its first item's, else its billable period's."""
    items = [i for i in claim.get("item") or [] if isinstance(i, dict)]
    items.sort(key=lambda i: int(i.get("sequence", 0)))
    on = service_date(items[0], fallback=date.min) if items else date.min
    return on if on != date.min else service_date(claim, fallback=fallback)


def beneficiary_ref(member: Member, fallback: Any) -> dict[str, Any]:
    """The patient reference an answer carries: the payer's member when known."""
    if member.coverage is not None and isinstance(member.coverage.get("beneficiary"), dict):
        return dict(member.coverage["beneficiary"])
    return logical_ref(fallback, "Unknown member")


def coverage_ref(member: Member, fallback: Resource | None) -> dict[str, Any]:
    if member.coverage is not None:
        return ref(member.coverage)
    keys = identifier_keys(fallback)
    if keys:
        system, value = keys[0]
        return {"identifier": {**({"system": system} if system else {}), "value": value}}
    if fallback and fallback.get("subscriberId"):
        return {"identifier": {"value": str(fallback["subscriberId"])}}
    return {"display": "Coverage not found"}


def logical_ref(reference: Any, display: str) -> dict[str, Any]:
    """A reference an answer can carry: the request's own when it points outside the
    request (a contained one would dangle), else only a display."""
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str) \
            and not reference["reference"].startswith("#"):
        return {"reference": reference["reference"]}
    return {"display": display}
