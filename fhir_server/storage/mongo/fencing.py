"""The MongoDB side of fencing (``storage/fence.py``): before a write's commit point, each
lease it runs under is renewed on the condition that this holder still owns it."""

from __future__ import annotations

import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from fhir_server.storage import fence
from fhir_server.storage.mongo.guarded import Guarded


async def check_fences(db: AsyncDatabase[dict[str, Any]], guarded: Guarded) -> None:
    """``LeaseLost`` unless every lease held by the running code is still its holder's."""
    for held in fence.held():
        if not await guarded.update(db[fence.LOCKS], held.name, {"owner": held.owner},
                                    {"$set": {"expires": time.time() + held.lease}}):
            raise fence.LeaseLost(held.name)
