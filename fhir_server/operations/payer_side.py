"""This server as the payer, where the caller's rights come in: the member's Coverage only
when the caller may see it, and the request's patient and Coverage checked as for a read.
The payer's logic itself is in ``fhir_server/revenue/payer/``."""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import NotFound, Unprocessable
from fhir_server.operations.base import Call
from fhir_server.operations.common import Route
from fhir_server.revenue.payer.members import Member, find_member
from fhir_server.revenue.records import Resolver, Resource


async def visible_member(call: Call, resolver: Resolver, coverage_ref_: Any) -> Member:
    """The member's Coverage, if the caller may see it (else: an unknown member)."""
    member = await find_member(call.repo, call.settings, resolver, coverage_ref_)
    if member.coverage is not None and not await call.may_see("Coverage", member.coverage):
        return Member(None, member.payer)
    if member.coverage is not None:
        call.concerns((member.coverage.get("beneficiary") or {}).get("reference"))
    return member


async def check_subject(call: Call, resolver: Resolver, patient_ref_: Any, way: Route,
                        *, where: str) -> tuple[Resource | None, str | None]:
    """The request's patient and Coverage, when stored here, must be ones the caller may
    see (404 otherwise, as for a read), and the Coverage must be that patient's."""
    patient, patient_local = await resolver.get(patient_ref_, "Patient")
    if patient_local and not await call.may_see("Patient", patient):
        raise NotFound(f"{patient_local} is not known")
    call.concerns(patient_local)
    if way.coverage_local:
        if not await call.may_see("Coverage", way.coverage):
            raise NotFound(f"{way.coverage_local} is not known")
        beneficiary = ((way.coverage or {}).get("beneficiary") or {}).get("reference")
        if patient_local and beneficiary != patient_local:
            raise Unprocessable(f"{way.coverage_local} is not the coverage of {patient_local}",
                                expression=[f"{where}.insurance.coverage"])
    return patient, patient_local
