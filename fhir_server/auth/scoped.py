"""The repository a request works with: the caller's access bound in, so no handler can
forget a rule.

* reads (``current``, ``version``) of a resource outside the terms answer "not
  there" (the route says 404: existence does not leak);
* searches (``search``, ``count``) get the terms ANDed in, also into the inner
  searches of chains and ``_has``, which confines conditional matches too;
  ``fetch`` (result pages, ``_include``) drops what the terms exclude;
* history lists only versions within the terms (each version judged on its
  own content; a deletion by the version it deleted);
* writes (``write``, ``commit_transaction``) need the letter on the type, an
  existing resource within the read terms (else 404) and the write terms (else
  403), and the new content within the write terms (else 403): a
  ``patient/`` token cannot put a resource outside its patient's compartment, nor
  into another patient's through any reference that places it in one, nor change
  a resource that is also another patient's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fhir_server.auth.access import Access, Deny
from fhir_server.auth.patient_visibility import Visibility, patient_query, visibility
from fhir_server.auth.roles import AUDIT_TYPE
from fhir_server.core.errors import Forbidden, NotFound
from fhir_server.core.fhirjson import loads_stored
from fhir_server.search.extract import index_resource
from fhir_server.search.query import NOTHING, And, Chain, Has, Or, Query, SortKey, and_, or_
from fhir_server.search.registry import lookup
from fhir_server.storage.model import ChangeEvent, StoredVersion, now_ms
from fhir_server.storage.repository import (
    Current,
    HistoryCursor,
    HistoryPage,
    PlannedWrite,
    Repository,
    history_key,
)

LETTER_OF_METHOD = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
HISTORY_SCAN = 200  # versions read per round while filtering a history listing
HISTORY_SCAN_MAX = 20_000  # versions examined for one page at most


class ScopedRepository(Repository):
    """The base repository, with the caller's access enforced on every call."""

    def __init__(self, base: Repository, access: Access) -> None:
        self.base = base
        self.access = access
        self.engine = base.engine
        self.records = base.records
        self.locks = base.locks
        self.concepts = base.concepts  # terminology content is not patient data
        self._seen: dict[str, bool] = {}

    async def open(self) -> None:
        await self.base.open()

    async def close(self) -> None:
        await self.base.close()

    async def ping(self) -> None:
        await self.base.ping()

    # -- judging single resources ------------------------------------------------

    def _index_of(self, stored: StoredVersion) -> dict[str, Any]:
        """The search values of a stored version (versions keep none: extracted again)."""
        resource = loads_stored(stored.text or "{}")
        return index_resource({**resource, "id": stored.id_},
                              base_url=self.access.settings.base_url)

    async def _version_admitted(self, stored: StoredVersion, letter: str) -> bool:
        """A version within the terms; a deletion is judged by the version it deleted."""
        cache = f"{letter}|{stored.type_}/{stored.id_}/{stored.version}"
        if cache in self._seen:
            return self._seen[cache]
        filt = await self.access.filter(stored.type_, letter)
        if filt is None:
            ok = True
        elif isinstance(filt, Deny):
            ok = False
        elif stored.deleted:
            before = (await self.base.version(type_=stored.type_, id_=stored.id_,
                                              version=stored.version - 1)
                      if stored.version > 1 else None)
            ok = before is not None and await self._version_admitted(before, letter)
        else:
            ok = await self.access.admits(stored.type_, letter, id_=stored.id_,
                                          index=self._index_of(stored), ts=stored.last_updated)
        self._seen[cache] = ok
        return ok

    async def _current_admitted(self, type_: str, id_: str, letter: str) -> bool | None:
        """Whether the current resource is within the terms (None when absent or deleted)."""
        stored = await self.base.peek(type_=type_, id_=id_)
        if stored is None or stored.deleted:
            return None
        return await self.access.admits_stored(type_, letter, id_)

    async def readable(self, *, type_: str, id_: str, letter: str = "r") -> bool:
        """Whether the resource (or, when deleted, its last version) is within the terms."""
        if await self.access.filter(type_, letter) is None:
            return True
        admitted = await self._current_admitted(type_, id_, letter)
        if admitted is not None:
            return admitted
        stored = await self.base.current(type_=type_, id_=id_)
        return stored is not None and await self._version_admitted(stored, letter)

    # -- reads -----------------------------------------------------------------------

    async def _seeing(self, type_: str, letter: str) -> str:
        """The letter whose terms decide whether a resource exists for this caller: r, or,
        for a token that may change but not read the type (a patch reads internally), the
        changing letter itself. A read route has already refused a token without r."""
        return "r" if not isinstance(await self.access.filter(type_, "r"), Deny) else letter

    async def current(self, *, type_: str, id_: str) -> StoredVersion | None:
        stored = await self.base.current(type_=type_, id_=id_)
        letter = await self._seeing(type_, "u")
        if stored is None or await self.access.filter(type_, letter) is None:
            return stored
        if stored.deleted:
            return stored if await self._version_admitted(stored, letter) else None
        admitted = await self._current_admitted(type_, id_, letter)
        if admitted is None:  # changed in between: judge the version read
            admitted = await self._version_admitted(stored, letter)
        return stored if admitted else None

    async def version(self, *, type_: str, id_: str, version: int) -> StoredVersion | None:
        stored = await self.base.version(type_=type_, id_=id_, version=version)
        if stored is None or await self._version_admitted(stored, "r"):
            return stored
        return None

    async def types(self) -> list[str]:
        return await self.base.types()

    async def peek(self, *, type_: str, id_: str) -> Current | None:
        """Unfiltered: the version a write expects, also of what a write rule changes on the
        caller's behalf (``plan_side_writes``), which the caller may not read. So an
        interaction that answers from it about an id the caller named peeks only after
        ``check_target`` (patient tokens: 404 unless readable) or a read through the terms
        (PATCH, history), and no answer reveals what it found."""
        return await self.base.peek(type_=type_, id_=id_)

    async def exists(self, *, type_: str, id_: str) -> bool:
        """Whether a reference resolves (referential integrity). For a token with a launch
        patient, only to what it can see: a resource outside its read terms "does not
        resolve" exactly like an unknown id, else the answer would tell another patient's
        resources from ids that do not exist. Public reference data (Practitioner,
        Organization, ...) resolves; a token that may not read the type at all (say
        ``patient/Communication.c``) sees by its patient's visibility. Tokens without a
        launch patient resolve against everything, as before."""
        if not await self.base.exists(type_=type_, id_=id_):
            return False
        patient = self._launch_patient()
        if patient is None:
            return True
        filt = await self.access.filter(type_, "r")
        if filt is None:
            return True
        if not isinstance(filt, Deny):
            return await self.access.admits_stored(type_, "r", id_)
        seen = visibility(type_)
        if seen is Visibility.PUBLIC:
            return True
        if seen in (Visibility.HIDDEN, Visibility.OWNED):  # owned: only through its terms
            return False
        return await self.base.matches(type_=type_, id_=id_,
                                       query=patient_query(patient, type_))

    def _launch_patient(self) -> str | None:
        """The launch patient of a token with ``patient/`` scopes (None for other tokens)."""
        p = self.access.principal
        if p is None or p.patient is None or not any(s.context == "patient" for s in p.scopes):
            return None
        return p.patient

    async def _confined(self, type_: str, query: Query) -> Query | None:
        """The query with the search terms ANDed in, in its chains and ``_has`` too; None when
        nothing of the type is permitted."""
        filt = await self.access.filter(type_, "s")
        if isinstance(filt, Deny):
            return None
        query = await self._confine_inner(query)
        return query if filt is None else and_(query, filt)

    async def _confine_inner(self, query: Query) -> Query:
        if isinstance(query, And):
            return and_(*[await self._confine_inner(q) for q in query.parts])
        if isinstance(query, Or):
            return or_(*[await self._confine_inner(q) for q in query.parts])
        if isinstance(query, Chain):
            inner = await self._confined(query.target, query.inner)
            return Chain(query.param, query.target, NOTHING if inner is None else inner)
        if isinstance(query, Has):
            inner = await self._confined(query.source, query.inner)
            return Has(query.source, query.param, query.type_,
                       NOTHING if inner is None else inner)
        return query

    async def search(self, *, type_: str, query: Query, sort: Sequence[SortKey],
                     limit: int) -> list[str]:
        confined = await self._confined(type_, query)
        if confined is None:
            return []
        return await self.base.search(type_=type_, query=confined, sort=sort, limit=limit)

    async def count(self, *, type_: str, query: Query) -> int:
        confined = await self._confined(type_, query)
        return 0 if confined is None else await self.base.count(type_=type_, query=confined)

    async def matches(self, *, type_: str, id_: str, query: Query) -> bool:
        confined = await self._confined(type_, query)
        return confined is not None and await self.base.matches(type_=type_, id_=id_,
                                                                query=confined)

    async def fetch(self, *, type_: str, ids: Sequence[str],
                    where: Query | None = None) -> list[StoredVersion]:
        filt = await self.access.filter(type_, "s")
        if isinstance(filt, Deny):
            return []
        where = filt if where is None else (where if filt is None else and_(where, filt))
        return await self.base.fetch(type_=type_, ids=ids, where=where)

    async def references(self, *, type_: str, ids: Sequence[str],
                         prefix: str = "") -> dict[str, list[str]]:
        kept = {s.id_ for s in await self.fetch(type_=type_, ids=ids)}
        return await self.base.references(type_=type_, ids=[i for i in ids if i in kept],
                                          prefix=prefix)

    async def history(self, *, type_: str | None = None, id_: str | None = None,
                      since: datetime | None = None,
                      at: tuple[datetime, datetime] | None = None, count: int,
                      cursor: HistoryCursor | None = None,
                      exclude_types: frozenset[str] = frozenset()) -> HistoryPage:
        hidden = exclude_types
        if type_ is None and not await self._sees_audit():
            hidden = hidden | {AUDIT_TYPE}
        if type_ is not None:
            filt = await self.access.filter(type_, "s")
            if isinstance(filt, Deny):
                return HistoryPage(versions=[], total=0, next_cursor=None)
            if filt is None:
                return await self.base.history(type_=type_, id_=id_, since=since, at=at,
                                               count=count, cursor=cursor)
        elif await self._sees_everything():
            return await self.base.history(since=since, at=at, count=count, cursor=cursor,
                                           exclude_types=hidden)
        return await self._filtered_history(type_=type_, id_=id_, since=since, at=at,
                                            count=count, cursor=cursor, hidden=hidden)

    async def _sees_audit(self) -> bool:
        return await self.access.filter(AUDIT_TYPE, "s") is None

    async def _sees_everything(self) -> bool:
        """Whether every type (but AuditEvent) is searchable without terms: an unrestricted
        ``user/*`` or ``system/*`` scope with s, and no role narrower than admin."""
        p = self.access.principal
        if p is None:
            return True
        return p.role in (None, "admin") and any(
            s.type == "*" and not s.restriction and s.context != "patient"
            and "s" in s.interactions for s in p.scopes)

    async def _filtered_history(self, *, type_: str | None, id_: str | None,
                                since: datetime | None, at: tuple[datetime, datetime] | None,
                                count: int, cursor: HistoryCursor | None,
                                hidden: frozenset[str]) -> HistoryPage:
        """Read versions in rounds, keep those within the terms, stop at count."""
        start = cursor or HistoryCursor(as_of=now_ms())
        position: HistoryCursor | None = start
        kept: list[StoredVersion] = []
        examined = 0
        last_examined: StoredVersion | None = None
        while position is not None and len(kept) <= count and examined < HISTORY_SCAN_MAX:
            page = await self.base.history(type_=type_, id_=id_, since=since, at=at,
                                         count=HISTORY_SCAN, cursor=position,
                                         exclude_types=hidden)
            for stored in page.versions:
                examined += 1
                if len(kept) <= count and await self._version_admitted(stored, "s"):
                    kept.append(stored)
                if len(kept) <= count:
                    last_examined = stored
            position = page.next_cursor
        more = len(kept) > count or position is not None
        kept = kept[:count]
        nxt = None
        if more:
            anchor = kept[-1] if len(kept) == count else last_examined
            if anchor is not None:
                nxt = HistoryCursor(as_of=start.as_of, ts=anchor.last_updated,
                                    key=history_key(anchor.type_, anchor.id_, anchor.version))
        total = len(kept) if cursor is None and not more else None
        return HistoryPage(versions=kept, total=total, next_cursor=nxt)

    # -- writes ----------------------------------------------------------------------

    async def check_target(self, *, type_: str, id_: str, method: str) -> None:
        """A patient token aims a PUT, PATCH or DELETE (also a conditional PUT's body id, when
        the criteria match nothing) only at a resource it can see (current or deleted): an
        id of another patient's resource, current or deleted, and an id that does not exist
        get the same 404, so no answer tells them apart. It follows that a
        patient token cannot create by PUT (ids are global, so a free id would answer
        otherwise than a taken one): it creates with POST."""
        letter = LETTER_OF_METHOD.get(method, "u")
        self.access.require(type_, letter)
        if self.access.writing_patient(type_, letter) is None:
            return
        if not await self.readable(type_=type_, id_=id_, letter=await self._seeing(type_, letter)):
            raise NotFound(f"{type_}/{id_} is not known")

    async def _check_write(self, *, type_: str, id_: str, previous: int | None,
                           index: Mapping[str, Any] | None, method: str) -> None:
        letter = LETTER_OF_METHOD.get(method, "u")
        self.access.require(type_, letter)
        write_filter = await self.access.filter(type_, letter)
        if write_filter is None:
            return
        if previous is not None and await self._current_admitted(type_, id_, letter) is not None:
            if not await self.access.admits_stored(type_, await self._seeing(type_, letter), id_):
                raise NotFound(f"{type_}/{id_} is not known")
            if (not await self.access.admits_stored(type_, letter, id_)
                    or await self._names_other_patient(type_, id_, letter)):
                raise Forbidden(f"The access token does not permit changing {type_}/{id_}")
        if index is None:
            return
        foreign = self.access.foreign(type_, letter, index)
        if foreign:
            params = sorted({k.split("|", 1)[0] for k in foreign})
            found = [lookup(type_, p) for p in params]
            raise Forbidden(f"The access token does not permit writing this {type_}: its "
                            f"{', '.join(params)} names a patient other than the token's",
                            expression=[p.expression for p in found if p is not None])
        if not await self.access.admits(type_, letter, id_=id_, index=index):
            raise Forbidden(f"The access token does not permit writing this {type_}: it would "
                            "be outside the token's patient compartment or scope restriction")

    async def _names_other_patient(self, type_: str, id_: str, letter: str) -> bool:
        """Whether the current resource is also in another patient's compartment than the
        one a patient token's writes are confined to (it may read it, not change it)."""
        if self.access.writing_patient(type_, letter) is None:
            return False
        stored = await self.base.current(type_=type_, id_=id_)
        return (stored is not None and not stored.deleted
                and bool(self.access.foreign(type_, letter, self._index_of(stored))))

    async def write(self, *, type_: str, id_: str, previous: int | None, text: str | None,
                    index: Mapping[str, Any] | None, method: str,
                    ts: datetime | None = None) -> StoredVersion:
        await self._check_write(type_=type_, id_=id_, previous=previous, index=index,
                                method=method)
        return await self.base.write(type_=type_, id_=id_, previous=previous, text=text,
                                     index=index, method=method, ts=ts)

    async def commit_transaction(self, writes: list[PlannedWrite], *, ts: datetime,
                                 side_effects: Sequence[PlannedWrite] = ()
                                 ) -> list[StoredVersion]:
        for w in writes:
            await self._check_write(type_=w.type_, id_=w.id_, previous=w.previous,
                                    index=w.index, method=w.method)
        return await self.base.commit_transaction(writes, ts=ts, side_effects=side_effects)

    async def append_new(self, *, type_: str,
                         items: Sequence[tuple[str, str, Mapping[str, Any]]],
                         ts: datetime) -> int:
        self.access.require(type_, "c")
        return await self.base.append_new(type_=type_, items=items, ts=ts)

    # The outbox is the server's own: its consumers read it on the base repository, and
    # what a token may see of it is decided where events are delivered (Subscriptions).

    async def events(self, *, after: int, limit: int) -> list[ChangeEvent]:
        raise Forbidden("The change events are read by the server's consumers only")

    async def last_event(self) -> int:
        raise Forbidden("The change events are read by the server's consumers only")

    async def purge_events(self, *, before: datetime, upto: int) -> int:
        raise Forbidden("The change events are read by the server's consumers only")

    @property
    def access_key(self) -> str:
        return self.access.key()
