"""Reading the records the revenue cycle works on: a local ``Type/id``, a token search value,
and references followed from a resource that may have come from another server."""

from __future__ import annotations

import re
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.service import interactions as svc
from fhir_server.storage.repository import Repository

LOCAL_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
Resource = dict[str, Any]


def local_patient(reference: Any) -> str | None:
    """``reference`` when it is a local ``Patient/id`` (a Task's ``for``), else None."""
    match = LOCAL_REF.match(reference) if isinstance(reference, str) else None
    return str(reference) if match and match.group(1) == "Patient" else None


async def read_local(repo: Repository, reference: Any) -> Resource | None:
    """The current content of ``Type/id`` on this server (None: not here or deleted)."""
    match = LOCAL_REF.match(reference) if isinstance(reference, str) else None
    if not match:
        return None
    _, resource = await svc.current_resource(repo, match.group(1), match.group(2))
    return resource


class Resolver:
    """Follows references from a resource that may have come from another server:
    ``#id`` to its contained resources, ``Type/id`` or this server's absolute URL to
    this server, and a Bundle's entries (by fullUrl or ``Type/id``) when it came in one."""

    def __init__(self, repo: Repository, settings: Settings, resource: Resource,
                 bundle: Resource | None = None) -> None:
        self.repo = repo
        self.base = settings.base_url + "/"
        self.contained = {str(c.get("id")): c for c in resource.get("contained") or []
                          if isinstance(c, dict)}
        self.entries: dict[str, Resource] = {}
        entries = (bundle or {}).get("entry")
        for e in entries if isinstance(entries, list) else []:
            r = e.get("resource") if isinstance(e, dict) else None
            if isinstance(r, dict):
                if e.get("fullUrl"):
                    self.entries[str(e["fullUrl"])] = r
                if r.get("id"):
                    self.entries[f"{r.get('resourceType')}/{r['id']}"] = r

    async def get(self, reference: Any, type_: str) -> tuple[Resource | None, str | None]:
        """(the resource of that type, its ``Type/id`` when it is stored on this server)."""
        resource, local = await self._find(reference)
        if resource is None or resource.get("resourceType") != type_:
            return None, None
        return resource, local

    async def _find(self, reference: Any) -> tuple[Resource | None, str | None]:
        target = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(target, str):
            return None, None
        if target.startswith("#"):
            found = self.contained.get(target[1:])
            return (found, None) if isinstance(found, dict) else (None, None)
        if target in self.entries:
            return self.entries[target], None
        local = target[len(self.base):] if target.startswith(self.base) else target
        resource = await read_local(self.repo, local)
        return (resource, local) if resource is not None else (None, None)


def identifier_keys(resource: Resource | None) -> list[tuple[str, str]]:
    return [(str(i.get("system", "")), str(i["value"]))
            for i in (resource or {}).get("identifier") or [] if isinstance(i, dict)
            and i.get("value")]


def ref(resource_or_ref: Resource | str) -> dict[str, str]:
    if isinstance(resource_or_ref, str):
        return {"reference": resource_or_ref}
    return {"reference": f"{resource_or_ref['resourceType']}/{resource_or_ref['id']}"}
