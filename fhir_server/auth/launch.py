"""EHR launch contexts (``auth_launch``): the patient and encounter an EHR launches an app with.

The EHR (here: an admin or clinician, through ``POST /auth/launch`` or
``fhir-server launch``) creates a context and passes its opaque id to the app
as ``launch``; the app sends it back in the authorization request, and the
token response then carries ``patient`` and ``encounter``. A context lives ten
minutes and can be tied to one client.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from fhir_server.auth.users import FHIR_ID
from fhir_server.storage.auth_store import AuthStore, now_s

LAUNCH_LIFETIME = 600


class Resources(Protocol):
    async def exists(self, *, type_: str, id_: str) -> bool: ...


async def _checked(repo: Resources, type_: str, reference: str | None) -> str | None:
    if reference is None:
        return None
    id_ = reference.removeprefix(f"{type_}/")
    if not FHIR_ID.match(id_):
        raise ValueError(f"{type_} must be {type_}/id or an id")
    if not await repo.exists(type_=type_, id_=id_):
        raise ValueError(f"{type_}/{id_} does not exist on this server")
    return id_


async def create_launch(*, store: AuthStore, repo: Resources, patient: str | None,
                        encounter: str | None = None, client_id: str | None = None,
                        created_by: str | None = None) -> str:
    """A new launch context; returns its id."""
    if patient is None and encounter is None:
        raise ValueError("a launch context needs a patient or an encounter")
    doc = {"_id": secrets.token_urlsafe(16), "exp": now_s() + LAUNCH_LIFETIME,
           "patient": await _checked(repo, "Patient", patient),
           "encounter": await _checked(repo, "Encounter", encounter),
           "client_id": client_id, "created_by": created_by}
    await store.insert(kind="launch", doc=doc)
    return str(doc["_id"])
