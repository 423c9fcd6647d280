"""Turning a finished FHIR request into an AuditEvent (called by ``api/context.py``)."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.datastructures import Headers
from starlette.requests import Request

from fhir_server.audit import events
from fhir_server.auth.classify import Interaction
from fhir_server.auth.principal import Principal
from fhir_server.storage.model import instant, now_ms


class Answer(Protocol):
    """The status and headers of an answer (``api/context.Answered``)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...


def _created_reference(response: Answer, base_url: str) -> str | None:
    location = response.headers.get("location", "")
    if not location.startswith(base_url + "/"):
        return None
    parts = location[len(base_url) + 1:].split("/")
    return f"{parts[0]}/{parts[1]}" if len(parts) >= 2 else None


def _entities(request: Request, response: Answer, interaction: Interaction,
              principal: Principal | None, base_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    type_, id_ = interaction.type_, interaction.id_
    if interaction.code == "create" and response.status_code < 300:
        created = _created_reference(response, base_url)
        id_ = created.split("/", 1)[1] if created else None
    if type_ and id_:
        out.append(events.instance_entity(f"{type_}/{id_}"))
    elif interaction.code in {"search-type", "history-type", "history-system"} or (
            interaction.code in {"update", "patch", "delete", "operation"} and type_):
        names = sorted(set(request.query_params))
        out.append(events.query_entity(type_, names))
    patients = []
    if principal is not None and principal.patient:
        patients.append(principal.patient)
    if type_ == "Patient" and id_:
        patients.append(id_)
    if interaction.compartment and interaction.compartment[0] == "Patient":
        patients.append(interaction.compartment[1])
    patients += getattr(request.state, "audit_patients", [])  # set by operations
    out += getattr(request.state, "audit_entities", [])  # set by routes (an export job)
    out += [events.patient_entity(p) for p in dict.fromkeys(patients)]
    return out


def record_request(request: Request, response: Answer) -> None:
    """Queue the AuditEvent of a FHIR interaction (nothing for public endpoints)."""
    trail = getattr(request.app.state, "audit", None)
    interaction: Interaction | None = getattr(request.state, "interaction", None)
    if trail is None or interaction is None:
        return
    base_url = request.app.state.settings.base_url
    principal: Principal | None = getattr(request.state, "principal", None)
    code = interaction.code
    if code == "transaction-or-batch":
        code = "transaction" if getattr(request.state, "bundle_type", "") == "transaction" \
            else "batch"
    trail.record(events.rest_event(
        code=code, status=response.status_code, recorded=instant(now_ms()), base_url=base_url,
        principal=principal, address=request.client.host if request.client else None,
        entities=_entities(request, response, interaction, principal, base_url),
        operation=interaction.operation))
