"""The outbox's read side on MongoDB: events in number order, never past an unsettled one.

Events are written by ``event_log.py``: pending before their change's commit point, settled
after it, voided when the change did not commit. A reader returns them in number order and
stops before the first pending event whose writer may still be at work (another process in
flight, or this process's own), so an event that commits later is never skipped. A pending
event whose writer is gone (``liveness.py``) is settled on the spot, as recovery would:
its transaction first, if it had one (rolled forward when committed, back otherwise), then
the event itself, committed when its change is in place (its history version names the
event and is settled, or the current document reached it) and voided otherwise. So a dead
writer never blocks readers for longer than its lease.

Every filter here is on ``_id`` but the pending scan of recovery (the sparse index
``pending``, ``indexes.py``). Where ranges read the whole collection (FerretDB pushes down
only ``_id`` equality), events are read one ``_id`` lookup each instead: every number from
the floor up to the highest has its document (``event_log.py``), so the run stops at the
first number missing. A consumer that is up to date then costs one lookup per look, not a
scan of the retained outbox.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage.model import ChangeEvent
from fhir_server.storage.mongo.event_log import EVENTS, VOID, EventLog, event_key
from fhir_server.storage.mongo.filters import by_id
from fhir_server.storage.mongo.guarded import Guarded
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.transactions import TransactionLog
from fhir_server.storage.mongo.versions import HISTORY, PENDING, settle_version, version_filter

log = logging.getLogger("fhir_server.storage")

Doc = dict[str, Any]
PENDING_EVENTS: Doc = {"st": PENDING}
SETTLED_EVENTS: Doc = {"st": {"$exists": False}}


def after_filter(after: int) -> Doc:
    """The events numbered above ``after`` (read in ``_id`` order)."""
    return {"_id": {"$gt": event_key(after)}}


def purge_filter(*, upto: int, before: datetime, void: bool) -> Doc:
    """Settled (or void) events numbered at most ``upto`` and older than ``before``."""
    return {"_id": {"$lte": event_key(upto)}, "st": VOID if void else {"$exists": False},
            "ts": {"$lt": before}}


def _event(doc: Doc) -> ChangeEvent:
    return ChangeEvent(number=int(doc["_id"]), type_=str(doc["t"]), id_=str(doc["i"]),
                       version=int(doc["v"]), action=str(doc["a"]), at=doc["ts"],
                       trace=doc.get("tp"))


class Outbox:
    def __init__(self, *, db: AsyncDatabase[Doc], guarded: Guarded, liveness: Liveness,
                 log: EventLog, transactions: TransactionLog) -> None:
        self.db = db
        self.guarded = guarded
        self.liveness = liveness
        self.log = log
        self.transactions = transactions

    async def events(self, *, after: int, limit: int) -> list[ChangeEvent]:
        out: list[ChangeEvent] = []
        while len(out) < limit:
            want = limit - len(out)
            page = await self._page(after, want)
            for doc in page:
                if doc.get("st") == PENDING:
                    settled = await self._settle(doc)
                    if settled is None:
                        return out  # its writer may still be at work: nothing past it yet
                    doc = settled
                if doc.get("st") != VOID:
                    out.append(_event(doc))
            if len(page) < want:
                break
            after = int(page[-1]["_id"])  # voids took places in the page: read on
        return out

    async def _page(self, after: int, want: int) -> list[Doc]:
        """Up to ``want`` event documents numbered above ``after``, in order."""
        if self.log.uses_indexes:
            return [d async for d in self.db[EVENTS].find(after_filter(after))
                    .sort("_id", ASCENDING).limit(want)]
        page: list[Doc] = []
        number = after
        while len(page) < want:
            doc = await self.db[EVENTS].find_one({"_id": event_key(number + 1)})
            if doc is None:
                if not page and (floor := await self.log.floor()) > number:
                    number = floor  # purged up to the floor: the run goes on above it
                    continue
                break
            page.append(doc)
            number += 1
        if page:
            self.log.saw(number)
        return page

    async def last(self) -> int:
        return await self.log.highest()

    async def purge(self, *, before: datetime, upto: int) -> int:
        """Delete what every consumer has passed and is older than ``before``, below the
        highest settled number (so the highest number taken always stays, even should every
        event above it be voided). The floor is raised first (``event_log.py``)."""
        top = [d async for d in self.db[EVENTS].find(SETTLED_EVENTS, {"_id": 1})
               .sort("_id", DESCENDING).limit(1)]
        bound = min(upto, int(top[0]["_id"]) - 1) if top else 0
        if bound < 1:
            return 0
        await self.log.raise_floor(bound)
        deleted = await self.db[EVENTS].delete_many(
            purge_filter(upto=bound, before=before, void=False))
        await self.db[EVENTS].delete_many(purge_filter(upto=bound, before=before, void=True))
        return deleted.deleted_count

    async def recover(self) -> tuple[int, int]:
        """Settle the events a crash left pending: (settled, voided). Those whose writer may
        still live are left to readers, who settle them once it is gone."""
        settled = voided = 0
        for doc in [d async for d in self.db[EVENTS].find(PENDING_EVENTS)]:
            after = await self._settle(doc)
            if after is None:
                continue
            if after.get("st") == VOID:
                voided += 1
            elif "st" not in after:
                settled += 1
        if settled or voided:
            log.warning("outbox recovery settled=%d voided=%d", settled, voided)
        return settled, voided

    async def _settle(self, doc: Doc) -> Doc | None:
        """A pending event settled or voided if its writer is gone (or is this process, done
        with it); None while its writer may be at work."""
        number = int(doc["_id"])
        if self.log.in_flight(number):
            return None
        # As it is now: a page read a moment ago may show a writer's event it has settled since.
        doc = await self._now(doc)
        if doc.get("st") != PENDING:
            return doc
        own = doc.get("p") == self.liveness.process
        if not own and await self.liveness.may_live(doc, created="ts"):
            return None
        tx = doc.get("tx")
        if tx is not None and await self.transactions.state(tx) is not None:
            if own:
                await self.transactions.settle(tx)
            elif not await self.transactions.settle_if_stale(tx):
                return None
            doc = await self._now(doc)
            if doc.get("st") != PENDING:
                return doc
        if await self._committed(doc):
            await self.log.settle([number])
        else:
            await self.log.void([number])
        return await self._now(doc)

    async def _now(self, doc: Doc) -> Doc:
        """An event as it is now (a void if it is gone, which only a purge does)."""
        return await self.db[EVENTS].find_one({"_id": doc["_id"]}) or {**doc, "st": VOID}

    async def _committed(self, doc: Doc) -> bool:
        """Whether the change of a pending event whose writer is gone is in place."""
        number, type_, id_, version = int(doc["_id"]), str(doc["t"]), str(doc["i"]), int(doc["v"])
        hist = await self.db[HISTORY].find_one(
            version_filter(type_, id_, version, targeted=self.guarded.targeted),
            {"e": 1, "st": 1, "tx": 1, "ts": 1})
        if hist is None or hist.get("e") != number:
            return False  # never written, rolled back, or another writer's version since
        if hist.get("st") != PENDING:
            return True
        if "tx" in hist:
            return await self.transactions.state(hist["tx"]) == "committed"
        current = await self.db[type_].find_one(by_id(id_), {"v": 1})
        if current is None or int(current["v"]) < version:
            return False
        await settle_version(self.db, type_=type_, id_=id_, version=version, ts=hist["ts"],
                             targeted=self.guarded.targeted)
        return True
