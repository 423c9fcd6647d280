"""What the server keeps beside each Subscription, never in the resource.

* a record of kind ``subscriptions`` (id: the Subscription's id): who last wrote it as a
  client (``owner``: the token's client id, scopes, launch patient, role, user; None when
  authorization is off) and the secret its notifications are signed with;
* its delivery cursor, a record of kind ``event-cursors`` (the runner's, ``events/runner.py``)
  with id ``subscription:<id>``: the last event number it has been delivered or judged
  not to match, and ``count``: how many events it has been notified of since it started
  (a topic-based notification's ``events-since-subscription-start``; the events it has
  been notified of are numbered 1..``count``, ``numbering.py``). Being a cursor of
  that kind, the outbox sweep keeps every event above it while the Subscription is
  active, so nothing it has not got is purged.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from fhir_server.auth.patient_visibility import OWNED
from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import parse_scopes
from fhir_server.events.runner import CURSORS
from fhir_server.storage.records import Records
from fhir_server.subscriptions.numbering import forget_numbers

KIND = OWNED["Subscription"]  # "subscriptions": read by auth/owned.py too


def cursor_id(id_: str) -> str:
    return f"subscription:{id_}"


def owner_of(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    scope = " ".join([*(str(s) for s in principal.scopes), *principal.other_scopes])
    return {"client_id": principal.client_id, "scope": scope, "patient": principal.patient,
            "role": principal.role, "username": principal.username,
            "fhir_user": principal.fhir_user}


def principal_of(owner: dict[str, Any] | None) -> Principal | None:
    if owner is None:
        return None
    parsed = parse_scopes(str(owner.get("scope", "")))
    return Principal(client_id=str(owner.get("client_id", "")), scopes=tuple(parsed.resource),
                     other_scopes=tuple(parsed.other), username=owner.get("username"),
                     role=owner.get("role"), fhir_user=owner.get("fhir_user"),
                     patient=owner.get("patient"))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


async def record_owner(records: Records, id_: str, owner: dict[str, Any] | None) -> None:
    """Note the client that wrote the Subscription; the first write also draws its secret."""
    if not await records.insert(kind=KIND, doc={"_id": id_, "owner": owner,
                                                "secret": new_secret()}):
        await records.set_fields(kind=KIND, id_=id_, fields={"owner": owner})


async def state_of(records: Records, id_: str) -> dict[str, Any]:
    """The Subscription's record; one is made (with a new secret) if it has none (a
    Subscription stored before this room existed, or restored from an export)."""
    found = await records.get(kind=KIND, id_=id_)
    if found is None:
        await records.insert(kind=KIND, doc={"_id": id_, "owner": None, "secret": new_secret()})
        found = await records.get(kind=KIND, id_=id_)
    assert found is not None
    return found


async def rotate_secret(records: Records, id_: str) -> str:
    await state_of(records, id_)
    secret = new_secret()
    await records.set_fields(kind=KIND, id_=id_, fields={"secret": secret})
    return secret


async def cursor(records: Records, id_: str) -> int | None:
    found = await records.get(kind=CURSORS, id_=cursor_id(id_))
    return None if found is None else int(found["after"])


async def position(records: Records, id_: str) -> tuple[int, int] | None:
    """The saved cursor and count together, as written together (None: no cursor)."""
    found = await records.get(kind=CURSORS, id_=cursor_id(id_))
    return None if found is None else (int(found["after"]), int(found.get("count", 0)))


async def notified(records: Records, id_: str) -> int:
    """How many events the Subscription has been notified of since it started."""
    found = await records.get(kind=CURSORS, id_=cursor_id(id_))
    return 0 if found is None else int(found.get("count", 0))


async def save_cursor(records: Records, id_: str, after: int, *,
                      count: int | None = None) -> None:
    fields: dict[str, Any] = {"after": after, "seen": time.time()}
    if count is not None:
        fields["count"] = count
    if not await records.set_fields(kind=CURSORS, id_=cursor_id(id_), fields=fields):
        await records.insert(kind=CURSORS, doc={"_id": cursor_id(id_), **fields})


async def forget(records: Records, id_: str, *, secret: bool) -> None:
    """Drop the cursor (the outbox need not keep anything for it) and the log of its event
    numbers (started again, they count from 1); with ``secret``, the Subscription's record
    too (it was deleted)."""
    await forget_numbers(records, id_, count=await notified(records, id_))
    await records.delete(kind=CURSORS, id_=cursor_id(id_))
    if secret:
        await records.delete(kind=KIND, id_=id_)
