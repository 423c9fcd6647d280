"""Loading the terminology packs at start-up: a start that finds them loaded takes no lease,
so a lease left behind by a process killed mid-start never holds up the next start."""

from __future__ import annotations

import asyncio
import time

from fhir_server.storage.locks import LOCKS
from fhir_server.storage.open import open_repository
from fhir_server.terminology.loader import LOAD_LEASE, MARKERS, PACKS, load
from tests.support.store import Store, make_settings


async def test_a_start_with_the_packs_loaded_ignores_a_load_lease(terminology_store: Store
                                                                  ) -> None:
    settings = make_settings(terminology_store, fhir_terminology_load=True)
    repo = await open_repository(settings)
    try:
        assert all([await repo.records.get(kind=MARKERS, id_=p) for p in PACKS])
        # A loader that died a moment ago (or one still busy with a forced reload).
        assert await repo.records.insert(kind=LOCKS, doc={
            "_id": LOAD_LEASE, "owner": "another process", "expires": time.time() + 3600})
        started = time.monotonic()
        summary = await asyncio.wait_for(load(repo, settings), timeout=20)
        assert time.monotonic() - started < 5
        assert (summary.resources, summary.concepts) == (0, 0)
        held = await repo.records.get(kind=LOCKS, id_=LOAD_LEASE)
        assert held is not None and held["owner"] == "another process"  # not touched
    finally:
        await repo.records.delete(kind=LOCKS, id_=LOAD_LEASE)
        await repo.close()
