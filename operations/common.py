"""What the revenue-cycle operations share: reading resources, following references,
finding a payer's endpoint, and packing resources to travel to another server."""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from adapters.payer import PayerEndpoint
from fhir_server import interactions as svc
from fhir_server.config import Settings
from fhir_server.errors import Unprocessable
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.repository import Repository
from terminology.systems import ENDPOINT_CONNECTION, ENDPOINT_OAUTH

LOCAL_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
CENT = Decimal("0.01")
Resource = dict[str, Any]


def money(value: Any, currency: str) -> dict[str, Any]:
    return {"value": decimal_of(value).quantize(CENT, rounding=ROUND_HALF_UP),
            "currency": currency}


def decimal_of(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def now_instant() -> str:
    return instant(now_ms())


def today() -> date:
    return datetime.now(UTC).date()


def ref(resource_or_ref: Resource | str) -> dict[str, str]:
    if isinstance(resource_or_ref, str):
        return {"reference": resource_or_ref}
    return {"reference": f"{resource_or_ref['resourceType']}/{resource_or_ref['id']}"}


async def read_local(repo: Repository, reference: str | None) -> Resource | None:
    """The current content of ``Type/id`` on this server (None: not here or deleted)."""
    match = LOCAL_REF.match(reference or "")
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
        for e in (bundle or {}).get("entry") or []:
            r = (e or {}).get("resource")
            if isinstance(r, dict):
                if e.get("fullUrl"):
                    self.entries[str(e["fullUrl"])] = r
                if r.get("id"):
                    self.entries[f"{r.get('resourceType')}/{r['id']}"] = r

    async def get(self, reference: Any) -> tuple[Resource | None, str | None]:
        """(the resource, its ``Type/id`` when it is stored on this server)."""
        target = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(target, str):
            return None, None
        if target.startswith("#"):
            return self.contained.get(target[1:]), None
        if target in self.entries:
            return self.entries[target], None
        local = target[len(self.base):] if target.startswith(self.base) else target
        resource = await read_local(self.repo, local)
        return (resource, local) if resource is not None else (None, None)


async def payer_endpoint(repo: Repository, organization: Resource | None) -> PayerEndpoint | None:
    """The FHIR endpoint of a payer Organization stored here, if it has an active one."""
    for reference in (organization or {}).get("endpoint") or []:
        local = (reference or {}).get("reference")
        endpoint = await read_local(repo, local)
        if endpoint is None or endpoint.get("status") not in ("active", None):
            continue
        if ((endpoint.get("connectionType") or {}).get("code") != "hl7-fhir-rest"
                or (endpoint.get("connectionType") or {}).get("system") not in (
                    None, ENDPOINT_CONNECTION)):
            continue
        address = endpoint.get("address")
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            continue
        oauth = {e.get("url"): e for e in endpoint.get("extension") or []}.get(ENDPOINT_OAUTH)
        parts = {p.get("url"): p.get("valueString") for p in (oauth or {}).get("extension") or []}
        return PayerEndpoint(reference=str(local), address=address,
                             oauth_client_id=parts.get("clientId"),
                             oauth_scope=parts.get("scope"))
    return None


def identifier_keys(resource: Resource | None) -> list[tuple[str, str]]:
    return [(str(i.get("system", "")), str(i["value"]))
            for i in (resource or {}).get("identifier") or [] if isinstance(i, dict)
            and i.get("value")]


def pack(main: Resource, related: dict[str, Resource]) -> Resource:
    """``main`` ready to travel: every reference to a ``related`` resource (by its local
    ``Type/id``) points at a contained copy; references to anything else, which the
    receiver could not resolve, keep only their identifier and display."""
    names = {local: f"{related[local]['resourceType'].lower()}{n}"
             for n, local in enumerate(sorted(related), start=1)}

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "reference" and isinstance(item, str):
                    if item in names:
                        out[key] = f"#{names[item]}"
                    continue
                new = rewrite(item)
                if new not in (None, {}, []):
                    out[key] = new
            return out
        if isinstance(value, list):
            return [v for v in (rewrite(i) for i in value) if v not in (None, {}, [])]
        return value

    contained = []
    for local, resource in sorted(related.items()):
        body = {k: v for k, v in resource.items() if k not in ("id", "meta", "contained", "text",
                                                                 "endpoint")}
        contained.append({"resourceType": resource["resourceType"], "id": names[local],
                          **rewrite(body)})
    body = {k: v for k, v in main.items() if k not in ("id", "meta", "contained", "text")}
    return {"resourceType": main["resourceType"], "contained": contained,
            **rewrite(copy.deepcopy(body))}


def keep_local_references(value: Any, allowed: set[str]) -> Any:
    """A payer's answer with references into the payer's own server dropped (only the
    ones in ``allowed``, already mapped to this server, are kept)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item not in allowed:
                continue
            new = keep_local_references(item, allowed)
            if new not in (None, {}, []):
                out[key] = new
        return out
    if isinstance(value, list):
        return [v for v in (keep_local_references(i, allowed) for i in value)
                if v not in (None, {}, [])]
    return value


def require_local(resource: Resource | None, what: str, where: str) -> Resource:
    if resource is None:
        raise Unprocessable(f"{what} is not a resource on this server", expression=[where],
                            code="not-found")
    return resource
