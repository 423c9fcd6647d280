"""Periodic EHR syncs: with ``FHIR_EHR_SYNC_INTERVAL`` set, every active Endpoint that
carries the ``endpoint-ehr-sync`` extension (valueBoolean true) is synced one after the
other, then again after the interval. A failed sync is logged (the Endpoint and the
status, nothing else) and tried again at the next round; its watermark stays where the
last committed page left it. Started and stopped with the server (the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fhir_server.adapters.ehr_fhir import SYNC_TYPES
from fhir_server.adapters.endpoints import endpoint_of
from fhir_server.adapters.payer import FHIR_REST
from fhir_server.adapters.records import records
from fhir_server.core.errors import FhirError
from fhir_server.service import interactions as svc
from fhir_server.terminology.systems import ENDPOINT_EHR_SYNC

log = logging.getLogger("fhir_server.adapters.ehr_schedule")


def _marked(endpoint: dict[str, Any]) -> bool:
    return any(e.get("url") == ENDPOINT_EHR_SYNC and e.get("valueBoolean") is True
               for e in endpoint.get("extension") or [])


async def sync_marked(app: Any) -> int:
    """One round: sync every marked Endpoint; returns how many synced without error."""
    repo, settings = app.state.repo, app.state.settings
    found = await svc.find_resources(repo=repo, settings=settings, type_="Endpoint",
                                     criteria=[("status", "active")])
    done = 0
    for resource in sorted(found, key=lambda r: str(r.get("id"))):
        endpoint = endpoint_of(resource, f"Endpoint/{resource['id']}")
        if endpoint is None or endpoint.connection != FHIR_REST or not _marked(resource):
            continue
        try:
            await app.state.services.ehr.sync(repo=repo, records=records(repo, "ehr-sync"),
                                              endpoint=endpoint, types=list(SYNC_TYPES),
                                              since=None)
            done += 1
        except FhirError as error:
            if error.status == 409:  # another server process is syncing it this round
                log.debug("ehr sync skipped endpoint=%s (running elsewhere)", endpoint.reference)
                continue
            log.warning("ehr sync failed endpoint=%s status=%d", endpoint.reference,
                        error.status)
    return done


async def _loop(app: Any, interval: float) -> None:
    while True:
        try:
            await sync_marked(app)
        except Exception as exc:  # keep the schedule alive (a database hiccup)
            log.error("ehr sync round failed error=%s", type(exc).__name__)
        await asyncio.sleep(interval)


async def start(app: Any) -> None:
    interval = app.state.settings.fhir_ehr_sync_interval
    app.state.ehr_schedule = (asyncio.create_task(_loop(app, interval), name="ehr-sync")
                              if interval else None)


async def stop(app: Any) -> None:
    task = getattr(app.state, "ehr_schedule", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
