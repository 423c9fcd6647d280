"""``GET [base]/metadata``: a CapabilityStatement generated from what the server does.

It is built once per app at start-up (``fhir_server/runtime/warmup.py``) and served as built.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server import __version__
from fhir_server.api.negotiation import json_response, pretty
from fhir_server.api.websocket import websocket_url
from fhir_server.auth.server import endpoints
from fhir_server.core.config import Settings
from fhir_server.core.models import resource_types
from fhir_server.operations.registry import operations_for
from fhir_server.search.registry import params_for
from fhir_server.subscriptions.backport import CAPABILITY_TOPIC, topics

router = APIRouter()

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                     "history-type", "create", "search-type")


def _search_params(type_: str) -> list[dict[str, Any]]:
    return [
        {"name": code, "definition": p.url, "type": p.type,
         **({"documentation": p.description} if p.description else {})}
        for code, p in sorted(params_for(type_).items())
    ]


def _includes(type_: str) -> list[str]:
    refs = [c for c, p in sorted(params_for(type_).items()) if p.type == "reference"]
    return ["*", *(f"{type_}:{c}" for c in refs)] if refs else []


@cache
def _revincludes() -> dict[str, list[str]]:
    """Target type -> the ``Source:param`` reference parameters that can point at it."""
    types = resource_types()
    out: dict[str, list[str]] = {type_: [] for type_ in types}
    for source in types:
        for code, p in sorted(params_for(source).items()):
            if p.type == "reference":
                for target in p.target or types:
                    if target in out:
                        out[target].append(f"{source}:{code}")
    return out


@cache
def _resources() -> list[dict[str, Any]]:
    out = []
    for type_ in resource_types():
        includes, revincludes = _includes(type_), _revincludes()[type_]
        out.append({
            "type": type_,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            **({"searchInclude": includes} if includes else {}),
            **({"searchRevInclude": revincludes} if revincludes else {}),
            "searchParam": _search_params(type_),
        })
    return out


def _with_operations(entry: dict[str, Any]) -> dict[str, Any]:
    ops = operations_for(entry["type"])
    if not ops:
        return entry
    return {**entry, "operation": [{"name": op.code, "definition": op.canonical,
                                    "documentation": op.title} for op in ops]}


def _with_topics(entry: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The Subscription entry lists every topic a Subscription may name (R4 has no
    SubscriptionTopic resource: the Backport IG lists them here)."""
    if entry["type"] != "Subscription":
        return entry
    return {"extension": [{"url": CAPABILITY_TOPIC, "valueCanonical": t.canonical}
                          for t in topics(base_url)], **entry}


WEBSOCKET = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def smart_security(settings: Settings) -> dict[str, Any]:
    """``rest.security``: SMART on FHIR, with the authorization server's endpoints (oauth-uris)."""
    urls = endpoints(settings)
    return {
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": name, "valueUri": urls[name]}
            for name in ("authorize", "token", "introspect", "revoke")]}],
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
        "description": "SMART App Launch 2.2 and Backend Services; discovery at "
                       f"{settings.base_url}/.well-known/smart-configuration",
    }


def capability_statement(base_url: str, start: str,
                         security: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "id": "server",
        "url": f"{base_url}/metadata",
        "version": __version__,
        "name": "FhirRcmServer",
        "title": "FHIR revenue-cycle server",
        "status": "active",
        "experimental": False,
        "date": start,
        "publisher": "fhir-rcm-server",
        "kind": "instance",
        "software": {"name": "fhir-rcm-server", "version": __version__},
        "implementation": {"description": "FHIR R4 server for the clinic revenue cycle",
                           "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "extension": [{"url": WEBSOCKET, "valueUri": websocket_url(base_url)}],
            "mode": "server",
            "documentation": "FHIR R4 over JSON.",
            **({"security": security} if security else {}),
            "resource": [_with_topics(_with_operations(r), base_url) for r in _resources()],
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
            "operation": [{"name": "export", "definition":
                           "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
            "searchParam": [
                {"name": "_lastUpdated", "type": "date",
                 "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
            ],
        }],
    }


def statement_for(settings: Settings, started: str) -> dict[str, Any]:
    """The CapabilityStatement of a server with these settings, started at ``started``."""
    security = smart_security(settings) if settings.fhir_auth == "smart" else None
    return capability_statement(settings.base_url, started, security)


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    prepared = await request.app.state.warmup.result()  # built at start-up
    return json_response(prepared.capability, pretty_print=pretty(request))
