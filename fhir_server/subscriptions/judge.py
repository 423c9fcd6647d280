"""Whether an outbox event is a notification for a Subscription: its version meets the
criteria (``criteria.py``) and the Subscription's owner may read it, by the same access
rules as a read (``auth/access.py``: scopes, scope restrictions, a patient token's
compartment). A deletion is no match: criteria judge content.

One judge serves one batch of events: each version is read and its search values
extracted once for every Subscription, and each owner's access is compiled once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import orjson

from fhir_server.auth.access import Access
from fhir_server.core.config import Settings
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.active import Active
from fhir_server.subscriptions.criteria import index_of, matches
from fhir_server.subscriptions.worker import Pending


class Change(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def type_(self) -> str: ...
    @property
    def id_(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def action(self) -> str: ...


class Judge:
    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        self._versions: dict[tuple[str, str, int], tuple[dict[str, Any], datetime] | None] = {}
        self._access: dict[str, Access] = {}

    async def pending(self, active: Active, change: Change) -> Pending | None:
        if change.action == "delete" or change.type_ != active.criteria.type_:
            return None
        loaded = await self._load(change)
        if loaded is None:
            return None
        index, ts = loaded
        if not matches(active.criteria, type_=change.type_, id_=change.id_, index=index, ts=ts):
            return None
        if active.owner is not None:
            access = self._access.get(active.id_)
            if access is None:
                access = Access(principal=active.owner, repo=self.repo, settings=self.settings)
                self._access[active.id_] = access
            if not await access.admits(change.type_, "r", id_=change.id_, index=index, ts=ts):
                return None
        return Pending(number=change.number, type_=change.type_, id_=change.id_,
                       version=change.version)

    async def _load(self, change: Change) -> tuple[dict[str, Any], datetime] | None:
        key = (change.type_, change.id_, change.version)
        if key not in self._versions:
            stored = await self.repo.version(type_=change.type_, id_=change.id_,
                                             version=change.version)
            self._versions[key] = None if stored is None or stored.text is None else (
                index_of(orjson.loads(stored.text), id_=change.id_,
                         base_url=self.settings.base_url), stored.last_updated)
        return self._versions[key]
