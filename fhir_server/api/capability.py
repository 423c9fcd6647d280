"""``GET [base]/metadata``: a CapabilityStatement generated from what the server does."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_server import __version__
from fhir_server.api.negotiation import json_response, pretty
from fhir_server.deps import SettingsDep
from fhir_server.search.basic import supports_identifier
from fhir_server.storage.model import instant, now_ms
from fhir_server.validation import resource_types

router = APIRouter()

TYPE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "history-type",
                     "create", "search-type")
ID_PARAM = {"name": "_id", "type": "token",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "documentation": "Logical id of this artifact"}
IDENTIFIER_PARAM = {"name": "identifier", "type": "token",
                    "documentation": "An identifier of the resource (system|value)"}


@cache
def _resources() -> list[dict[str, Any]]:
    out = []
    for type_ in resource_types():
        params = [ID_PARAM, IDENTIFIER_PARAM] if supports_identifier(type_) else [ID_PARAM]
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
            "searchParam": params,
        })
    return out


def capability_statement(base_url: str, start: str) -> dict[str, Any]:
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
        "rest": [{
            "mode": "server",
            "documentation": "JSON only. Search supports _id and identifier so far.",
            "resource": _resources(),
            "interaction": [{"code": "history-system"}],
        }],
    }


@router.get("/metadata")
async def metadata(request: Request, settings: SettingsDep) -> Response:
    started = getattr(request.app.state, "started", None) or instant(now_ms())
    return json_response(capability_statement(settings.base_url, started),
                         pretty_print=pretty(request))
