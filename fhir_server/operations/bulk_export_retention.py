"""Deleting expired Bulk Data export jobs (``FHIR_EXPORT_RETENTION``): their NDJSON files
and their records.

Every job has a folder under ``FHIR_DATA_DIR/bulk-export/`` from its kick-off on, so one
pass over those folders finds every job: a folder whose record is expired, or gone (a
cancelled job; a folder younger than ``STARTING`` may be a job whose record is being
written), is deleted with its record. Each server process sweeps every quarter of the
retention (at most every ``MAX_INTERVAL``), beginning at start-up; sweeping twice, or in
two processes at once, deletes nothing more, so no lease is needed. A job that expired
and is not yet swept already answers 404 (``fhir_server/api/bulk.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path

from fhir_server.adapters.records import Records
from fhir_server.core.cancel import cancel_requested
from fhir_server.core.config import Settings
from fhir_server.operations.bulk_export import JOB, RUNNING, expired, export_root, job_dir

log = logging.getLogger("fhir_server.operations.bulk_export")
MAX_INTERVAL = 900.0  # seconds between two sweeps, at most
# A kick-off makes the job's folder, then its record: a folder younger than this without a
# record may be a job starting (in this process or another), not a cancelled one.
STARTING = 60.0


def _younger_than(folder: Path, seconds: float) -> bool:
    try:
        return time.time() - folder.stat().st_mtime < seconds
    except FileNotFoundError:  # swept by another process meanwhile
        return True


def interval(settings: Settings) -> float:
    return min(max(settings.fhir_export_retention / 4, 1.0), MAX_INTERVAL)


async def sweep(*, settings: Settings, jobs: Records) -> int:
    """Delete the expired jobs' files and records; how many jobs."""
    root = export_root(settings)
    names = await asyncio.to_thread(lambda: sorted(p.name for p in root.iterdir())
                                    if root.is_dir() else [])
    removed = 0
    for job in names:
        if not JOB.match(job) or job in RUNNING:
            continue
        record = await jobs.get(job)
        if record is not None and not expired(record):
            continue
        if record is None and await asyncio.to_thread(_younger_than, job_dir(settings, job),
                                                      STARTING):
            continue
        await jobs.delete(job)
        await asyncio.to_thread(shutil.rmtree, job_dir(settings, job), True)
        removed += 1
    if removed:
        log.info("expired bulk export jobs deleted count=%d", removed)
    return removed


class RetentionSweeper:
    """The sweep, run every ``interval(settings)`` seconds in this process."""

    def __init__(self, *, settings: Settings, jobs: Records) -> None:
        self.settings = settings
        self.jobs = jobs
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bulk-export-retention")

    async def _run(self) -> None:
        while True:
            try:
                await sweep(settings=self.settings, jobs=self.jobs)
            except Exception as error:  # the database away for a moment: next round
                if cancel_requested():
                    return
                log.warning("bulk export sweep failed error=%s", type(error).__name__)
            if cancel_requested():  # the cancel may also have been swallowed whole
                return
            await asyncio.sleep(interval(self.settings))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
