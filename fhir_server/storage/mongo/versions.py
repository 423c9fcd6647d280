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




def version_filter(type_: str, id_: str, version: int, *, targeted: bool) -> dict[str, Any]:
    """One version by its key. ``targeted`` (MongoDB): with the history's shard key
    (``t``, ``i``) too, so that a sharded cluster asks the one shard holding the resource's
    versions; FerretDB 1.24 pushes down only a filter that is exactly ``{_id}``."""
    found: dict[str, Any] = {"_id": history_key(type_, id_, version)}
    return {**found, "t": type_, "i": id_} if targeted else found


async def settle_version(db: AsyncDatabase[dict[str, Any]], *, type_: str, id_: str,
                         version: int, ts: datetime, targeted: bool) -> None:
    """Clear a committed version's pending mark (and its transaction), and record on the
    version it replaced when it was replaced: one bulk request."""
    ops = [UpdateOne(version_filter(type_, id_, version, targeted=targeted),
                     {"$unset": {"st": "", "tx": ""}})]
    if version > 1:
        ops.append(UpdateOne(version_filter(type_, id_, version - 1, targeted=targeted),
                             {"$set": {"until": ts}}))
    await db[HISTORY].bulk_write(ops, ordered=False)
