"""Settling the writes a crash left pending on MongoDB (see ``repository.py``'s protocol).

A single write's history version stays marked pending (``st: "p"``) from its insert until
its current document has moved and the mark is cleared. If its process died in between,
the version is rolled forward when the current document reached it, and back (deleted)
when it did not. Transactions (their versions carry ``tx``) are settled by their own log
(``transactions.py``). Whether a pending write's process may still live is
``liveness.py``'s question: another worker's write in flight is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage.mongo.guarded import Guarded
from fhir_server.storage.mongo.liveness import Liveness
from fhir_server.storage.mongo.transactions import TransactionLog
from fhir_server.storage.mongo.versions import HISTORY, PENDING, settle_version

log = logging.getLogger("fhir_server.storage")

Doc = dict[str, Any]


class Recovery:
    """Settles pending writes: at start-up, later in the background for those whose process
    may still live, and on the spot when a writer runs into one."""

    def __init__(self, *, db: AsyncDatabase[Doc], guarded: Guarded, liveness: Liveness,
                 transactions: TransactionLog, lease: float) -> None:
        self.db = db
        self.guarded = guarded
        self.liveness = liveness
        self.transactions = transactions
        self.lease = lease
        self._later: asyncio.Task[None] | None = None  # settles young pending writes

    async def recover(self) -> tuple[int, int]:
        """Settle writes left pending by a crash: (rolled forward, rolled back).

        Transactions first, then single writes. A pending write whose process may live
        (another worker's in flight, or one killed a moment ago whose lease has not lapsed
        yet) is waited for, a lease period at most; what is left then is settled in the
        background once its process is gone (readers meanwhile see the version before it).
        """
        forward = back = 0
        deadline = asyncio.get_running_loop().time() + self.lease + 1
        while True:
            moved, undone, txs, docs = await self._once()
            forward, back = forward + moved, back + undone
            if not (txs or docs) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        if forward or back:
            log.warning("recovery rolled_forward=%d rolled_back=%d", forward, back)
        if txs or docs:
            self._later = asyncio.create_task(self._settle_later(txs, docs))
        return forward, back

    async def stop(self) -> None:
        if self._later is not None:
            self._later.cancel()
            with suppress(asyncio.CancelledError):
                await self._later

    async def _once(self) -> tuple[int, int, list[str], list[Doc]]:
        """One pass; what is left pending by other processes that may live (this process's
        own are in flight here, and left alone)."""
        forward, back, txs = await self.transactions.recover()
        docs: list[Doc] = []
        async for doc in self.db[HISTORY].find({"st": PENDING, "tx": {"$exists": False}}):
            cur = await self.db[doc["t"]].find_one({"_id": doc["i"]}, {"v": 1})
            if cur is not None and int(cur["v"]) >= int(doc["v"]):
                await settle_version(self.db, type_=doc["t"], id_=doc["i"], version=int(doc["v"]),
                                     ts=doc["ts"], targeted=self.guarded.targeted)
                forward += 1
            elif doc.get("p") == self.liveness.process:
                continue
            elif await self.liveness.may_live(doc, created="ts"):
                docs.append(doc)
            else:
                await self.guarded.delete(self.db[HISTORY], doc["_id"], {"st": PENDING})
                back += 1
        return forward, back, txs, docs

    async def _settle_later(self, txs: list[str], docs: list[Doc]) -> None:
        while txs or docs:
            await asyncio.sleep(self.lease)
            txs = [tx for tx in txs if not await self.transactions.settle_if_stale(tx)]
            docs = [d for d in docs if not await self.settle_stale(d["_id"], d["t"], d["i"])]

    async def settle_stale(self, key: str, type_: str, id_: str) -> bool:
        """Settle a pending single write whose process is gone; whether it is settled."""
        doc = await self.db[HISTORY].find_one({"_id": key})
        if doc is None or doc.get("st") != PENDING:
            return True
        if await self.liveness.may_live(doc, created="ts"):
            return False
        cur = await self.db[type_].find_one({"_id": id_}, {"v": 1})
        if cur is not None and int(cur["v"]) >= int(doc["v"]):
            await settle_version(self.db, type_=type_, id_=id_, version=int(doc["v"]),
                                 ts=doc["ts"], targeted=self.guarded.targeted)
        else:
            await self.guarded.delete(self.db[HISTORY], key, {"st": PENDING})
        return True

    async def settle_stale_transaction(self, type_: str, id_: str) -> None:
        """The transaction that staged ``type_/id_``, settled if its process is gone."""
        doc = await self.db[type_].find_one({"_id": id_}, {"tx": 1})
        if doc is not None and "tx" in doc:
            await self.transactions.settle_if_stale(doc["tx"])
