"""Fetching what clearinghouses have for this server (277CA, 835) and applying it.

``poll_once`` reads every active Endpoint whose connectionType is ``x12-5010``, asks its
outbox for the files after the persisted cursor, applies each (``remittance_posting``)
and moves the cursor past it. A file refused whole (4xx: not valid X12, a payer or Claim
this server does not know, an 835 whose BPR02 does not balance) is passed, since it would
block every later file, and kept with a failed post-remittance Task on the worklist
(``post_remittance_step.set_aside_file``: once per file, however often it is fetched; its
``$retry`` applies the kept file again). A file over ``FHIR_MAX_X12_BYTES`` is not kept:
its Task names the Endpoint and the file. A conflict or an unreachable database stops
that clearinghouse's round, so the file is tried again next time. One lease per Endpoint
keeps two server processes from applying the same file at once.

After the files, the round asks about the claims that waited ``FHIR_CLAIM_STATUS_DAYS``
for their payer's answer (276/277, ``claim_status_step.py``).

``fhir-server x12 poll`` runs one round; with ``FHIR_X12_POLL_INTERVAL`` > 0 the server
runs one every that many seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from fhir_server.adapters.endpoints import endpoint_of
from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict, FhirError, PayloadTooLarge
from fhir_server.operations import post_remittance_step as step
from fhir_server.operations.claim_status_step import inquire_once
from fhir_server.operations.remittance_posting import apply_file, file_kind
from fhir_server.service import interactions as svc
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import X12_CONNECTION

log = logging.getLogger("fhir_server.operations.x12_poll")


@dataclass
class PollSummary:
    applied: list[str] = field(default_factory=list)  # "Endpoint/x: file id"
    refused: list[str] = field(default_factory=list)  # "Endpoint/x: file id: reason"
    failed: list[str] = field(default_factory=list)  # clearinghouses not reached this round
    asked: list[str] = field(default_factory=list)  # claims asked about (276), by answer


async def poll_once(*, repo: Repository, settings: Settings, x12: Any) -> PollSummary:
    summary = PollSummary()
    endpoints = await svc.find_resources(
        repo=repo, settings=settings, type_="Endpoint",
        criteria=[("connection-type", f"{X12_CONNECTION}|x12-5010"), ("status", "active")])
    for resource in endpoints:
        local = f"Endpoint/{resource['id']}"
        try:
            endpoint = endpoint_of(resource, local)
            if endpoint is None:
                continue
            async with repo.locks.hold([f"x12-poll:{local}"], wait=1.0):
                await _poll(repo, settings, x12, endpoint, summary)
        except LockBusy:
            continue  # another process is polling it
        except FhirError as error:
            summary.failed.append(f"{local}: {error.diagnostics}")
            log.warning("x12 poll failed endpoint=%s status=%d", local, error.status)
    if endpoints:  # then the claims that wait too long for their payer's answer
        summary.asked = await inquire_once(repo=repo, settings=settings, x12=x12)
    return summary


async def _poll(repo: Repository, settings: Settings, x12: Any, endpoint: PayerEndpoint,
                summary: PollSummary) -> None:
    cursor = await x12.state.cursor(endpoint.reference)
    for file_id, text in await x12.outbox(endpoint, cursor):
        where = f"{endpoint.reference}: {file_id[:64]}"
        try:
            await apply_file(repo=repo, settings=settings, text=text)
            summary.applied.append(where)
        except Conflict:
            summary.failed.append(f"{where}: changed concurrently, tried again next round")
            return
        except FhirError as error:
            if error.status >= 500:
                raise
            # No caller to answer: the worklist is told, once per file however often it
            # is fetched, and the poll goes on past it (it would block every later file).
            task = await set_aside(repo, settings, endpoint.reference, file_id, text, error)
            summary.refused.append(f"{where}: {error.diagnostics[:200]}: kept on the "
                                   f"worklist as Task/{task['id']}")
            log.warning("x12 file refused endpoint=%s file=%s status=%d task=%s",
                        endpoint.reference, file_id[:64], error.status, task["id"])
        await x12.state.put_cursor(endpoint.reference, file_id)


async def set_aside(repo: Repository, settings: Settings, endpoint: str, file_id: str,
                    text: str, error: FhirError) -> dict[str, Any]:
    """The post-remittance Task of a file refused whole: kept with it, unless it is too
    large to keep."""
    if isinstance(error, PayloadTooLarge):
        return await step.set_aside_unkept(repo=repo, settings=settings, endpoint=endpoint,
                                           file_id=file_id, error=error)
    return await step.set_aside_file(repo=repo, settings=settings, text=text, refused=error,
                                     kind=file_kind(text))


class Poller:
    """The server's background poll, every FHIR_X12_POLL_INTERVAL seconds."""

    def __init__(self, *, repo: Repository, settings: Settings, services: Any) -> None:
        self.repo, self.settings, self.services = repo, settings, services
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.fhir_x12_poll_interval)
            try:
                summary = await poll_once(repo=self.repo, settings=self.settings,
                                          x12=self.services.x12)
                if summary.applied or summary.refused or summary.asked:
                    log.info("x12 poll applied=%d refused=%d asked=%d", len(summary.applied),
                             len(summary.refused), len(summary.asked))
            except Exception as exc:  # the poll must outlive one bad round
                log.warning("x12 poll round failed error=%s", type(exc).__name__)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def start_poller(*, repo: Repository, settings: Settings, services: Any) -> Poller | None:
    if settings.fhir_x12_poll_interval <= 0:
        return None
    return Poller(repo=repo, settings=settings, services=services)
