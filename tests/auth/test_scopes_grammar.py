"""The SMART scope grammar (v2 and v1), Scope.covers, and the role bounds."""

from __future__ import annotations

import pytest

from fhir_server.auth.roles import ROLES, bound_scopes, role_allows, role_letters
from fhir_server.auth.scopes import InvalidScope, Scope, parse_scope, parse_scopes


@pytest.mark.parametrize(("text", "context", "type_", "letters", "restriction"), [
    ("patient/Encounter.rs", "patient", "Encounter", "rs", ()),
    ("user/Claim.cu", "user", "Claim", "cu", ()),
    ("system/*.cruds", "system", "*", "cruds", ()),
    ("patient/Observation.rs?category=laboratory", "patient", "Observation", "rs",
     (("category", "laboratory"),)),
    ("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
     "observation-category|vital-signs&status=final", "patient", "Observation", "rs",
     (("category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"),
      ("status", "final"))),
    ("patient/*.read", "patient", "*", "rs", ()),
    ("user/Claim.write", "user", "Claim", "cud", ()),
    ("system/*.*", "system", "*", "cruds", ()),
    ("user/Patient.*", "user", "Patient", "cruds", ()),
    ("user/Patient.s", "user", "Patient", "s", ()),
    ("user/Patient.d", "user", "Patient", "d", ()),
])
def test_resource_scopes_parse(text: str, context: str, type_: str, letters: str,
                               restriction: tuple[tuple[str, str], ...]) -> None:
    scope = parse_scope(text)
    assert scope == Scope(context=context, type=type_, interactions=frozenset(letters),
                          restriction=restriction)


@pytest.mark.parametrize("text", ["openid", "fhirUser", "launch", "launch/patient",
                                  "launch/encounter", "offline_access", "online_access"])
def test_non_resource_scopes_are_none(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(("text", "reason"), [
    ("patient/Observation.sr", "in that order"),
    ("patient/Observation.rr", "in that order"),
    ("patient/Observation.x", "is not a permission"),
    ("patient/Observation.", "not a scope this server knows"),
    ("doctor/Observation.rs", "is not a context"),
    ("patient/Unicorn.rs", "is not a resource type"),
    ("patient/*.rs?category=x", "needs a resource type"),
    ("patient/Observation.rs?colour=red", "is not a search parameter of Observation"),
    ("patient/Observation.rs?category=", "has no value"),
    ("patient/Observation.read?category=x", "SMART v2"),
    ("admin", "not a scope this server knows"),
    ("patient/Observation.rs?=&&", "not a query string"),
])
def test_invalid_scopes_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scope(text)
    assert reason in info.value.reason
    assert info.value.scope == text


def test_parse_scopes_sorts_them_out() -> None:
    parsed = parse_scopes("openid fhirUser launch/patient patient/Observation.rs "
                          "patient/Observation.rs bogus user/Claim.write")
    assert [str(s) for s in parsed.resource] == ["patient/Observation.rs", "user/Claim.cud"]
    assert parsed.other == ["openid", "fhirUser", "launch/patient"]
    assert [e.scope for e in parsed.invalid] == ["bogus"]
    assert parsed.launch_patient and not parsed.launch_encounter


def test_str_round_trips() -> None:
    for text in ("patient/Observation.rs?category=laboratory", "system/*.cruds",
                 "user/Claim.cu"):
        scope = parse_scope(text)
        assert scope is not None
        assert parse_scope(str(scope)) == scope


def _s(text: str) -> Scope:
    scope = parse_scope(text)
    assert scope is not None
    return scope


@pytest.mark.parametrize(("allowed", "requested", "expected"), [
    ("user/*.cruds", "user/Claim.rs", True),
    ("user/Claim.rs", "user/Claim.r", True),
    ("user/Claim.rs", "user/Claim.cu", False),
    ("user/Claim.rs", "patient/Claim.rs", False),
    ("user/Claim.rs", "user/*.rs", False),
    ("user/Claim.rs", "user/Invoice.rs", False),
    ("patient/Observation.rs", "patient/Observation.rs?category=laboratory", True),
    ("patient/Observation.rs?category=laboratory", "patient/Observation.rs", False),
    ("patient/Observation.rs?category=laboratory",
     "patient/Observation.r?category=laboratory&status=final", True),
    ("system/*.*", "system/Patient.cruds", True),
    ("patient/*.read", "patient/Patient.rs", True),
    ("patient/*.read", "patient/Patient.rus", False),
])
def test_covers(allowed: str, requested: str, expected: bool) -> None:
    assert _s(allowed).covers(_s(requested)) is expected


def test_roles_are_the_clinics() -> None:
    assert set(ROLES) == {"admin", "clinician", "front-desk", "billing", "patient"}


@pytest.mark.parametrize(("role", "type_", "letters"), [
    ("admin", "Claim", "cruds"),
    ("admin", "AuditEvent", "rs"),
    ("clinician", "Observation", "cruds"),
    ("clinician", "Claim", "rs"),
    ("clinician", "AuditEvent", ""),
    ("front-desk", "Patient", "cruds"),
    ("front-desk", "Encounter", "crus"),
    ("front-desk", "CoverageEligibilityRequest", "cruds"),
    ("front-desk", "Organization", "rs"),
    ("front-desk", "Observation", ""),
    ("front-desk", "Claim", ""),
    ("billing", "Claim", "cruds"),
    ("billing", "Invoice", "cruds"),
    ("billing", "PaymentReconciliation", "cruds"),
    ("billing", "Patient", "rs"),
    ("billing", "Observation", ""),
    ("patient", "Observation", "rs"),
    ("patient", "AuditEvent", ""),
])
def test_role_letters(role: str, type_: str, letters: str) -> None:
    assert role_letters(role, type_) == frozenset(letters)


def test_bound_scopes_narrow_and_drop() -> None:
    assert bound_scopes("billing", ["openid", "user/Claim.cruds", "user/Observation.rs",
                                    "user/Patient.cruds", "system/*.cruds"]) == [
        "openid", "user/Claim.cruds", "user/Patient.rs"]
    assert bound_scopes("patient", ["patient/*.cruds", "user/Patient.rs", "launch/patient"]) == [
        "patient/*.rs", "patient/Appointment.crus", "patient/Communication.crs",
        "patient/QuestionnaireResponse.crus", "launch/patient"]
    assert bound_scopes("admin", ["user/*.cruds", "user/AuditEvent.cruds"]) == [
        "user/*.cruds", "user/AuditEvent.rs"]
    assert bound_scopes(None, ["system/*.*", "bogus"]) == ["system/*.cruds"]


def test_bound_star_expands_per_type() -> None:
    granted = [_s(s) for s in bound_scopes("front-desk", ["user/*.cruds"])]
    by_type = {s.type: s.interactions for s in granted}
    for type_ in ("Patient", "Appointment", "Coverage", "Encounter", "Organization", "Claim",
                  "Observation", "AuditEvent"):
        assert by_type.get(type_, frozenset()) == role_letters("front-desk", type_)
    assert all(s.context == "user" for s in granted)


def test_bound_keeps_restrictions() -> None:
    assert bound_scopes("clinician", ["patient/Observation.cruds?category=laboratory"]) == [
        "patient/Observation.cruds?category=laboratory"]


def test_role_allows_rechecks_context_and_table() -> None:
    assert role_allows("patient", context="patient", type_="Observation", letter="r")
    assert not role_allows("patient", context="user", type_="Observation", letter="r")
    assert not role_allows("billing", context="user", type_="Observation", letter="r")
    assert not role_allows("no-such-role", context="user", type_="Patient", letter="r")
    assert role_allows(None, context="system", type_="Patient", letter="d")
