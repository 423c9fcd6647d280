"""Whether an outbox event is a notification for a Subscription: it is of the watched
type, on the Subscription's journey topic if it has one (``events/topics.py``), its
version meets the criteria or filters (``criteria.py``) and the Subscription's owner may
read it, by the same access
rules as a read (``auth/access.py``: scopes, scope restrictions, a patient token's
compartment). A deletion is no match: criteria judge content.

One judge serves one batch of events: each version is read once for every Subscription,
only the search values its criteria read are extracted (once per set of parameters: a
version has dozens, criteria read one or two), and each owner's access is compiled once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import orjson

from fhir_server.auth.access import Access
from fhir_server.core.config import Settings
from fhir_server.events.event import Event
from fhir_server.events.topics import topics_of
from fhir_server.storage.model import ChangeEvent
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
    @property
    def at(self) -> datetime: ...
    @property
    def trace(self) -> str | None: ...


class Judge:
    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo, self.settings = repo, settings
        self._versions: dict[tuple[str, str, int],
                             tuple[dict[str, Any], datetime, str] | None] = {}
        self._indexes: dict[tuple[str, str, int, frozenset[str] | None], dict[str, Any]] = {}
        self._access: dict[str, Access] = {}
        self._topics: dict[int, tuple[str, ...]] = {}

    async def pending(self, active: Active, change: Change) -> Pending | None:
        watch = active.watch
        if change.action == "delete" or change.type_ != watch.type_:
            return None
        if watch.journey is not None and watch.journey not in await self._journeys(change):
            return None
        loaded = await self._load(change)
        if loaded is None:
            return None
        resource, ts, text = loaded
        if not all(matches(c, type_=change.type_, id_=change.id_, ts=ts,
                           index=self._index(change, resource, c.reads))
                   for c in watch.criteria):
            return None
        if active.owner is not None:
            access = self._access.get(active.id_)
            if access is None:
                access = Access(principal=active.owner, repo=self.repo, settings=self.settings)
                self._access[active.id_] = access
            if await access.filter(change.type_, "r") is not None and not await access.admits(
                    change.type_, "r", id_=change.id_, ts=ts,
                    index=self._index(change, resource, None)):
                return None
        return Pending(number=change.number, type_=change.type_, id_=change.id_,
                       version=change.version, at=change.at, text=text,
                       trace=change.trace)

    async def _journeys(self, change: Change) -> tuple[str, ...]:
        """The event's journey topics: carried by the runner's events, read again from the
        history for the outbox's (a catch-up, ``$events``)."""
        if isinstance(change, Event):
            return change.topics
        if change.number not in self._topics:
            self._topics[change.number] = (await topics_of(self.repo, change)
                                           if isinstance(change, ChangeEvent) else ())
        return self._topics[change.number]

    async def _load(self, change: Change) -> tuple[dict[str, Any], datetime, str] | None:
        key = (change.type_, change.id_, change.version)
        if key not in self._versions:
            stored = await self.repo.version(type_=change.type_, id_=change.id_,
                                             version=change.version)
            self._versions[key] = None if stored is None or stored.text is None else (
                orjson.loads(stored.text), stored.last_updated, stored.text)
        return self._versions[key]

    def _index(self, change: Change, resource: dict[str, Any],
               only: frozenset[str] | None) -> dict[str, Any]:
        """The version's values of the search parameters ``only`` (None: all)."""
        key = (change.type_, change.id_, change.version, only)
        if key not in self._indexes:
            self._indexes[key] = index_of(resource, id_=change.id_,
                                          base_url=self.settings.base_url, only=only)
        return self._indexes[key]
