"""A request's access: the principal's terms compiled into search filters, once per request.

``await access.filter(type_, letter)`` is ``None`` (everything of that type),
``DENY`` (nothing), or a search query (``search/query.py``) that a resource
must match: the OR of the token's terms, each the AND of its scope's
``?restriction`` (compiled by the search compiler) and, for ``patient/``
scopes, what is the launch patient's (the compartment, or the attribution of
``patient_visibility.py``; for a Subscription, what the token's app made for that
patient, ``owned.py``). The same query is ANDed into
searches, asked of the database for stored resources, and evaluated in Python
on content that has no row yet (``search/evaluate.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from fhir_server.auth.owned import owned_query
from fhir_server.auth.patient_visibility import (
    Visibility,
    foreign_patients,
    patient_query,
    visibility,
)
from fhir_server.auth.principal import Principal
from fhir_server.auth.roles import AUDIT_TYPE
from fhir_server.core.config import Settings
from fhir_server.core.errors import Forbidden, Invalid, MethodNotAllowed
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.evaluate import evaluate
from fhir_server.search.parse import criteria_of
from fhir_server.search.query import EVERYTHING, Query, and_, or_
from fhir_server.service.search.codes import prepare
from fhir_server.storage.repository import Repository
from fhir_server.storage.resolve import resolve

log = logging.getLogger("fhir_server.auth")


class Deny:
    def __repr__(self) -> str:
        return "DENY"


DENY: Final = Deny()
VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class Access:
    """What one request's principal may see and change (``None`` principal: FHIR_AUTH=off)."""

    def __init__(self, *, principal: Principal | None, repo: Repository,
                 settings: Settings) -> None:
        self.principal = principal
        self.repo = repo
        self.settings = settings
        self._filters: dict[tuple[str, str], Query | Deny | None] = {}
        self._resolved: dict[tuple[str, str], Query] = {}

    def require(self, type_: str, letter: str, *, where: str | None = None) -> None:
        """403 unless some scope grants ``letter`` on ``type_``; AuditEvents are never written."""
        if type_ == AUDIT_TYPE and letter in "cud":
            raise MethodNotAllowed("AuditEvents are recorded by the server; clients cannot "
                                   f"{VERBS[letter]} them", expression=[where] if where else [])
        if self.may(type_, letter):
            return
        raise Forbidden(f"The access token does not permit {VERBS[letter]} on {type_}",
                        expression=[where] if where else [])

    def may(self, type_: str, letter: str) -> bool:
        """Whether some scope grants ``letter`` on ``type_`` (always, with FHIR_AUTH=off)."""
        return self.principal is None or self.principal.may(type_, letter)

    async def filter(self, type_: str, letter: str) -> Query | Deny | None:
        if self.principal is None:
            return None
        cache_key = (type_, letter)
        if cache_key not in self._filters:
            self._filters[cache_key] = await self._compile(type_, letter)
        return self._filters[cache_key]

    async def _compile(self, type_: str, letter: str) -> Query | Deny | None:
        assert self.principal is not None
        clauses: list[Query] = []
        for term in self.principal.alternatives(type_, letter):
            parts: list[Query] = []
            if term.restriction:
                ctx = CompileContext(base_url=self.settings.base_url)
                try:
                    parts.append(await prepare(self.repo, self.settings, compile_criteria(
                        ctx, type_, criteria_of(list(term.restriction)), record=False)))
                except Invalid:
                    log.warning("scope restriction does not compile type=%s", type_)
                    continue  # a restriction that cannot be evaluated grants nothing
            if term.patient is not None and visibility(type_) is Visibility.OWNED:
                parts.append(await owned_query(self.repo.records, type_=type_,
                                               principal=self.principal, letter=letter))
            elif term.patient is not None:
                parts.append(patient_query(term.patient, type_))
            term_query = and_(*parts)
            if term_query == EVERYTHING:
                return None
            clauses.append(term_query)
        if not clauses:
            return DENY
        return or_(*clauses)

    async def admits(self, type_: str, letter: str, *, id_: str, index: Mapping[str, Any],
                     ts: datetime | None = None) -> bool:
        """Whether content that has no stored row (a write's new content, a historical
        version), with id ``id_``, search values ``index`` (``search/extract.py``) and, for a
        version, its instant ``ts``, is within the terms."""
        filt = await self.filter(type_, letter)
        if filt is None:
            return True
        if isinstance(filt, Deny):
            return False
        if self.foreign(type_, letter, index):
            return False
        cache_key = (type_, letter)
        if cache_key not in self._resolved:
            self._resolved[cache_key] = await resolve(self.repo, filt)
        return evaluate(self._resolved[cache_key], id_=id_, index=index, ts=ts)

    def writing_patient(self, type_: str, letter: str) -> str | None:
        """The patient whose compartment confines every term granting ``letter`` (c u d) on
        ``type_``; None when some term is not confined to a patient."""
        if self.principal is None or letter not in "cud":
            return None
        patients = {t.patient for t in self.principal.alternatives(type_, letter)}
        return next(iter(patients)) if len(patients) == 1 else None

    def foreign(self, type_: str, letter: str, index: Mapping[str, Any]) -> list[str]:
        """The references (``param|Patient/<id>``) by which a write of ``letter`` would put
        content in another patient's compartment than the token's (none when unconfined)."""
        patient = self.writing_patient(type_, letter)
        return [] if patient is None else foreign_patients(type_, index, patient)

    async def admits_stored(self, type_: str, letter: str, id_: str) -> bool:
        """Whether the current, not deleted resource ``type_/id_`` is within the terms."""
        filt = await self.filter(type_, letter)
        if filt is None:
            return True
        if isinstance(filt, Deny):
            return False
        return await self.repo.matches(type_=type_, id_=id_, query=filt)

    def key(self) -> str:
        """Identifies these terms (search snapshots are served only to the same terms)."""
        p = self.principal
        if p is None:
            return ""
        return "|".join([p.client_id, p.username or "", p.role or "", p.patient or "",
                         *sorted(str(s) for s in p.scopes)])
