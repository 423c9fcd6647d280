"""Who is calling: the Principal built from a verified access token's Grant.

``Principal.alternatives(type_, letter)`` answers "on what terms may this
caller do this interaction on this type": one ``Term`` per scope that grants
it (its restriction, and the patient whose compartment confines it), after
the role bound and the audit rule. No terms: denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fhir_server.auth.patient_visibility import Visibility, visibility
from fhir_server.auth.roles import AUDIT_ROLE, AUDIT_TYPE, role_allows
from fhir_server.auth.scopes import Scope, parse_scopes
from fhir_server.auth.tokens import Grant


@dataclass(frozen=True)
class Term:
    """One way an interaction is allowed: a scope's restriction, and its compartment."""

    restriction: tuple[tuple[str, str], ...]
    patient: str | None  # confined to what is Patient/<patient>'s (patient_visibility.py)


@dataclass(frozen=True)
class Principal:
    client_id: str
    scopes: tuple[Scope, ...]
    other_scopes: tuple[str, ...] = ()
    username: str | None = None
    role: str | None = None
    fhir_user: str | None = None  # "Practitioner/123"
    patient: str | None = None  # launch patient id
    encounter: str | None = None
    token_id: str | None = None

    @classmethod
    def from_grant(cls, grant: Grant) -> Principal:
        parsed = parse_scopes(grant.scope)  # invalid scopes cannot grant anything: ignored
        fhir_user = grant.fhir_user
        if fhir_user and "/" in fhir_user:  # keep the relative "Type/id" part
            fhir_user = "/".join(fhir_user.rstrip("/").split("/")[-2:])
        return cls(client_id=grant.client_id, scopes=tuple(parsed.resource),
                   other_scopes=tuple(parsed.other), username=grant.username, role=grant.role,
                   fhir_user=fhir_user, patient=grant.patient, encounter=grant.encounter,
                   token_id=grant.token_id)

    def _audit_ok(self, scope: Scope, letter: str) -> bool:
        """AuditEvent: read only, never with patient/ scopes, and only through a scope
        naming it or the admin role."""
        return (letter in "rs" and scope.context != "patient"
                and (scope.type == AUDIT_TYPE or self.role == AUDIT_ROLE))

    def alternatives(self, type_: str, letter: str) -> list[Term]:
        """Every term on which the token allows ``letter`` (c r u d s) on ``type_``.

        ``patient/`` scopes (``patient_visibility.py``) confine a type of the Patient
        compartment to the launch patient's compartment; outside it, an attributed type
        (PaymentReconciliation, Binary, ...) to the launch patient's resources, read only;
        a public type (Organization, Practitioner, ValueSet, ...) is read and searched
        whole, not written; an owned type (Subscription) to what the token's app made for
        that patient (``owned.py``); any other type is not granted.
        """
        seen = visibility(type_)
        out: list[Term] = []
        for scope in self.scopes:
            if not scope.allows(type_, letter):
                continue
            if not role_allows(self.role, context=scope.context, type_=type_, letter=letter):
                continue
            if type_ == AUDIT_TYPE and not self._audit_ok(scope, letter):
                continue
            if scope.context != "patient":
                out.append(Term(scope.restriction, None))
            elif self.patient is None:
                continue  # a patient/ scope without a launch patient grants nothing
            elif seen in (Visibility.COMPARTMENT, Visibility.OWNED) or (
                    seen is Visibility.ATTRIBUTED and letter in "rs"):
                out.append(Term(scope.restriction, self.patient))
            elif seen is Visibility.PUBLIC and letter in "rs":
                out.append(Term(scope.restriction, None))
        return out

    def may(self, type_: str, letter: str) -> bool:
        return bool(self.alternatives(type_, letter))

    def may_any(self, letter: str) -> bool:
        """Whether some scope grants ``letter`` on some type (for system-wide interactions)."""
        return any(letter in s.interactions for s in self.scopes)


@lru_cache(maxsize=4096)
def principal_of(grant: Grant) -> Principal:
    """``Principal.from_grant``, parsed once per grant: a token serves many requests, and
    its grant (a frozen value) is the same each time."""
    return Principal.from_grant(grant)
