"""Whether the running task was asked to stop.

A cancel that reaches a database driver's call can come back as the driver's own error,
or not at all (pymongo's async API). A background loop that catches errors to survive a
database hiccup asks this before going on, so that a stop it swallowed still stops it."""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
