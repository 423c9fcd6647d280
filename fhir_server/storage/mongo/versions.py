"""The history collection's shared vocabulary: keys, the pending mark, settling a version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage.repository import history_key

HISTORY = "history"
PENDING = "p"  # a version written but not yet known to be committed
# A pending version (or transaction) older than this was left by a writer that died.
STALE_SECONDS = 30




async def settle_version(db: AsyncDatabase[dict[str, Any]], *, type_: str, id_: str,
                         version: int, ts: datetime) -> None:
    """Clear a committed version's pending mark (and its transaction), and record on the
    version it replaced when it was replaced: one bulk request."""
    ops = [UpdateOne({"_id": history_key(type_, id_, version)},
                     {"$unset": {"st": "", "tx": ""}})]
    if version > 1:
        ops.append(UpdateOne({"_id": history_key(type_, id_, version - 1)},
                             {"$set": {"until": ts}}))
    await db[HISTORY].bulk_write(ops, ordered=False)
