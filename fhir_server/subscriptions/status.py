"""The server's own writes of a Subscription's status: ``active`` when it takes a requested
one on, ``error`` (with the reason in ``Subscription.error``) when notifications fail.

Each is a new version written by the server on the whole repository (no client's access,
no write rule: a client may not set these statuses), and only over the version the
server judged: if a client changed the Subscription meanwhile, its version stands and
its own event is handled next.
"""

from __future__ import annotations

import logging

import orjson

from fhir_server.core.config import Settings
from fhir_server.service.interactions import plan_write
from fhir_server.storage.model import now_ms
from fhir_server.storage.repository import Repository, VersionConflict

log = logging.getLogger("fhir_server.subscriptions")


async def set_status(repo: Repository, settings: Settings, *, id_: str, version: int,
                     was: str, status: str, error: str | None = None) -> bool:
    """Write ``status`` (and ``error``, or none) over version ``version`` whose status is
    ``was``; whether it was written (False: the Subscription changed or went since)."""
    current = await repo.current(type_="Subscription", id_=id_)
    if current is None or current.version != version or current.text is None:
        return False
    resource = orjson.loads(current.text)
    if resource.get("status") != was:
        return False
    resource.pop("error", None)
    resource["status"] = status
    if error is not None:
        resource["error"] = error
    ts = now_ms()
    w = plan_write(settings=settings, resource=resource, type_="Subscription", id_=id_,
                   previous=version, method="PUT", ts=ts)
    try:
        await repo.write(type_="Subscription", id_=id_, previous=version, text=w.text,
                         index=w.index, method="PUT", ts=ts)
    except VersionConflict:
        return False
    log.info("subscription status subscription=%s status=%s", id_, status)
    return True
