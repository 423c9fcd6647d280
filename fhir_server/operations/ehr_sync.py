"""``Endpoint/[id]/$sync``: pull what changed in an EHR since the last sync
(``fhir_server/adapters/ehr_fhir.py``), and answer a Parameters summary: per type, how many
resources were created, updated, unchanged and failed, and the watermark reached."""

from __future__ import annotations

from typing import Any

from fhir_server.adapters.ehr_fhir import SYNC_TYPES
from fhir_server.adapters.endpoints import endpoint_of
from fhir_server.adapters.payer import FHIR_REST
from fhir_server.adapters.records import records
from fhir_server.core.errors import Invalid, Unprocessable
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.revenue.records import read_local
from fhir_server.search.dates import date_range


async def run(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    resource = await read_local(call.repo, f"Endpoint/{call.id_}")
    endpoint = endpoint_of(resource, f"Endpoint/{call.id_}")
    if endpoint is None or endpoint.connection != FHIR_REST:
        raise Unprocessable(f"Endpoint/{call.id_} is not an active hl7-fhir-rest endpoint with "
                            "an http(s) address", expression=["Endpoint"])
    types = list(call.params.get("type") or SYNC_TYPES)
    for i, type_ in enumerate(types):
        if type_ not in SYNC_TYPES:
            raise Invalid(f"type must be one of {', '.join(SYNC_TYPES)}",
                          expression=[f"Parameters.parameter.where(name='type')[{i}]"])
    types = [t for t in SYNC_TYPES if t in types]  # references' targets first
    since = call.one("since")
    if since is not None:
        try:
            date_range(str(since))
        except Exception:
            raise Invalid("since must be a FHIR dateTime",
                          expression=["Parameters.parameter.where(name='since')"]) from None
    summary = await call.services.ehr.sync(
        repo=call.repo, records=records(call.repo, "ehr-sync"), endpoint=endpoint,
        types=types, since=since, bulk=call.one("bulk") is True)
    parameters = []
    for type_ in types:
        counts = summary.counts.get(type_, {})
        parts: list[dict[str, Any]] = [{"name": "type", "valueCode": type_}]
        parts += [{"name": k, "valueInteger": int(counts.get(k, 0))}
                  for k in ("created", "updated", "unchanged", "failed")]
        if type_ in summary.watermarks:
            parts.append({"name": "watermark", "valueInstant": summary.watermarks[type_]})
        parameters.append({"name": "result", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameters}


ENDPOINT_SYNC = Operation(
    id="Endpoint-sync", code="sync", title="Pull changes from an EHR",
    description="Pulls Patient, Encounter, Appointment, Coverage, Practitioner, Organization "
    "and Location resources updated in the EHR at this Endpoint since the last successful sync "
    "(or since `since`), stores them keyed by the EHR's ids, and answers how many were "
    "created, updated, unchanged and failed per type.",
    resource=("Endpoint",), type_level=False, instance=True,
    requires=(("Endpoint", "r"), *((t, letter) for t in SYNC_TYPES for letter in "cu")),
    parameters=(
        Param("type", "in", 0, "*", "code", "A type to sync (default: all seven)"),
        Param("since", "in", 0, "1", "dateTime", "Sync what changed since this instant "
              "instead of since the last sync"),
        Param("bulk", "in", 0, "1", "boolean", "Use the EHR's Bulk Data $export"),
        Param("result", "out", 0, "*", None, "Per type: created, updated, unchanged, failed "
              "and the watermark reached", parts=(
                  Param("type", "out", 1, "1", "code", "The type"),
                  Param("created", "out", 1, "1", "integer", "Resources created here"),
                  Param("updated", "out", 1, "1", "integer", "Resources updated here"),
                  Param("unchanged", "out", 1, "1", "integer", "Resources already up to date"),
                  Param("failed", "out", 1, "1", "integer", "Resources refused here"),
                  Param("watermark", "out", 0, "1", "instant", "The EHR's lastUpdated reached"),
              )),
    ),
    run=run)
