"""AuditEvent resources (R4), after the IHE Basic Audit Log Patterns where they fit.

Only identifiers go in: the client id, the user's name, role and fhirUser
reference, the resource type and id, the names (never the values) of search
parameters, the caller's network address. Never resource content.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fhir_server.auth.classify import ACTION
from fhir_server.auth.principal import Principal

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_SYSTEM = "urn:fhir-server:client"
USER_SYSTEM = "urn:fhir-server:user"
ROLE_SYSTEM = "urn:fhir-server:role"
OPERATION_SYSTEM = "urn:fhir-server:operation"
EXPORT_JOB_SYSTEM = "urn:fhir-server:bulk-export-job"
SUBSCRIPTION_CHANNEL_SYSTEM = "urn:fhir-server:subscription-channel"


def outcome_of(status: int) -> str:
    """0 success, 4 minor failure (the client's), 8 serious (unavailable), 12 major (a bug)."""
    if status < 400:
        return "0"
    if status < 500:
        return "4"
    return "12" if status == 500 else "8"


def _network(address: str | None) -> dict[str, Any]:
    return {"network": {"address": address, "type": "2"}} if address else {}


def agents(*, client_id: str | None, username: str | None, role: str | None,
           fhir_user: str | None, address: str | None) -> list[dict[str, Any]]:
    """The client application and, when there is one, the user it acts for."""
    out: list[dict[str, Any]] = []
    if client_id:
        out.append({"type": {"coding": [{"system": DCM, "code": "110150",
                                         "display": "Application"}]},
                    "who": {"identifier": {"system": CLIENT_SYSTEM, "value": client_id}},
                    "name": client_id, "requestor": username is None, **_network(address)})
    if username:
        who: dict[str, Any] = ({"reference": fhir_user} if fhir_user
                               else {"identifier": {"system": USER_SYSTEM, "value": username}})
        user: dict[str, Any] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP",
                                 "display": "information recipient"}]},
            "who": who, "altId": username, "name": username, "requestor": True,
            **_network(address)}
        if role:
            user["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": role}], "text": role}]
        out.append(user)
    if not out:  # no token: the anonymous caller, known by its address
        out.append({"type": {"coding": [{"system": DCM, "code": "110150",
                                         "display": "Application"}]},
                    "name": "anonymous", "requestor": True, **_network(address)})
    return out


def source(base_url: str) -> dict[str, Any]:
    return {"site": base_url, "observer": {"display": "fhir-server"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]}


REFERENCE = re.compile(r"^[A-Z][A-Za-z]{0,63}/[A-Za-z0-9\-.]{1,64}$")
INVALID = {"display": "(not a valid resource id)"}


def _what(reference: str) -> dict[str, str]:
    """The entity's reference, when it is one (a request for ``Patient/%00`` is audited too,
    naming no resource, rather than making an event the server cannot store)."""
    return {"reference": reference} if REFERENCE.match(reference) else dict(INVALID)


def instance_entity(reference: str) -> dict[str, Any]:
    return {"what": _what(reference),
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}}


def query_entity(type_: str | None, names: list[str]) -> dict[str, Any]:
    """A search: the type and the parameter NAMES (values can carry names, birth dates)."""
    text = f"{type_ or ''}?{'&'.join(names)}"
    return {"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "name": type_ or "*",
            "query": base64.b64encode(text.encode()).decode(),
            "detail": [{"type": "parameter-names", "valueString": ",".join(names) or "-"}]}


def export_entity(job: str, type_: str | None = None) -> dict[str, Any]:
    """A Bulk Data export job (its id), and with ``type_`` the file of that type."""
    entity: dict[str, Any] = {
        "what": {"identifier": {"system": EXPORT_JOB_SYSTEM, "value": job}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "20", "display": "Job"}}
    if type_:
        entity["name"] = f"{type_}.ndjson"
        entity["detail"] = [{"type": "resource-type", "valueString": type_}]
    return entity


def patient_entity(patient_id: str) -> dict[str, Any]:
    return {"what": _what(f"Patient/{patient_id}"),
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}


def rest_event(*, code: str, status: int, recorded: str, base_url: str,
               principal: Principal | None, address: str | None,
               entities: list[dict[str, Any]], operation: str | None = None
               ) -> dict[str, Any]:
    """One RESTful interaction (``code``: read, search-type, create, ..., operation)."""
    subtype = [{"system": INTERACTION, "code": code}]
    if operation:
        subtype.append({"system": OPERATION_SYSTEM, "code": operation})
    p = principal
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype,
        "action": ACTION.get(code, "E"),
        "recorded": recorded,
        "outcome": outcome_of(status),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents(client_id=p.client_id if p else None, username=p.username if p else None,
                        role=p.role if p else None, fhir_user=p.fhir_user if p else None,
                        address=address),
        "source": source(base_url),
    }
    if entities:
        event["entity"] = entities
    return event


def login_event(*, success: bool, recorded: str, base_url: str, client_id: str | None,
                username: str | None, role: str | None, kind: str, reason: str | None,
                address: str | None) -> dict[str, Any]:
    """A user's login (``kind`` password) or a client's authentication (``kind`` client)."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DCM, "code": "110122", "display": "Login"},
                    {"system": OPERATION_SYSTEM, "code": f"login-{kind}"}],
        "action": "E",
        "recorded": recorded,
        "outcome": "0" if success else "4",
        "agent": agents(client_id=client_id, username=username, role=role, fhir_user=None,
                        address=address),
        "source": source(base_url),
    }
    if reason and not success:
        event["outcomeDesc"] = reason[:200]
    return event


def transmit_event(*, recorded: str, base_url: str, subscription: str, channel: str,
                   destination: str, focuses: list[str], delivered: bool,
                   attempt: int | None, period: tuple[str, str] | None = None
                   ) -> dict[str, Any]:
    """Notifications sent (or tried) to a Subscription's receiver: the server as the
    source, the receiver as the destination (its host or mail domain only, never the full
    URL, which may carry a token), the Subscription and the resources named (their
    references; never their content, whatever the notification carried). One attempt
    (``attempt``: its number), or every notification delivered at a first attempt over
    ``period`` (``attempt`` None: ``subscriptions/transmits.py`` groups them)."""
    server = {"type": {"coding": [{"system": DCM, "code": "110153",
                                   "display": "Source Role ID"}]},
              "who": {"display": "fhir-server"}, "requestor": True}
    receiver = {"type": {"coding": [{"system": DCM, "code": "110152",
                                     "display": "Destination Role ID"}]},
                "who": {"identifier": {"system": SUBSCRIPTION_CHANNEL_SYSTEM,
                                       "value": channel}},
                "name": destination, "requestor": False,
                **_network(destination or None)}
    subscriber = {"what": _what(f"Subscription/{subscription}"),
                  "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                  "role": {"system": OBJECT_ROLE, "code": "9", "display": "Subscriber"}}
    outcome = "delivered" if delivered else "failed"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPE, "code": "transmit", "display": "Transmit Record"},
        "subtype": [{"system": OPERATION_SYSTEM, "code": f"notify-{channel}"}],
        "action": "R",
    }
    if period is not None:
        event["period"] = {"start": period[0], "end": period[1]}
    event.update({
        "recorded": recorded,
        "outcome": "0" if delivered else "8",
        "outcomeDesc": (f"attempt {attempt}: {outcome}" if attempt is not None
                        else f"{len(focuses)} notified at the first attempt"),
        "agent": [server, receiver],
        "source": source(base_url),
        "entity": [subscriber, *(instance_entity(ref) for ref in focuses)],
    })
    return event
