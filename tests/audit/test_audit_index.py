"""The AuditEvent writer's split extraction (``audit/index.py``) gives the same search
values as the extraction of the whole event (``search/extract.index_resource``)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fhir_server.audit.events import (
    instance_entity,
    login_event,
    patient_entity,
    query_entity,
    rest_event,
)
from fhir_server.audit.index import AuditIndexer
from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import parse_scopes
from fhir_server.search.extract import index_resource
from tools.data_sets import EXAMPLES

BASE = "http://clinic.example/fhir"


def comparable(ix: dict[str, Any]) -> dict[str, Any]:
    """Lists of values as sets (the rows an engine stores have no order)."""
    return {k: (v if isinstance(v, dict) else sorted(json.dumps(x, sort_keys=True, default=str)
                                                     for x in v))
            for k, v in ix.items()}


def events() -> list[dict[str, Any]]:
    practitioner = Principal(client_id="app", scopes=tuple(parse_scopes("user/*.rs").resource),
                             username="dr", role="clinician", fhir_user="Practitioner/7")
    backend = Principal(client_id="billing", scopes=tuple(parse_scopes("system/*.cruds").resource))
    out = []
    for n, principal in enumerate((practitioner, backend, None)):
        for code, entities in (
                ("read", [instance_entity("Patient/p1"), patient_entity("p1")]),
                ("search-type", [query_entity("Encounter", ["subject", "date"]),
                                 patient_entity("p2")]),
                ("create", [instance_entity("Claim/c9")]),
                ("operation", [])):
            out.append(rest_event(code=code, status=200 + n, recorded=f"2026-11-30T0{n}:00:00Z",
                                  base_url=BASE, principal=principal, address="10.0.0.5",
                                  entities=entities,
                                  operation="generate-bill" if code == "operation" else None))
    for success in (True, False):
        out.append(login_event(success=success, recorded="2026-11-30T08:00:00Z", base_url=BASE,
                               client_id="app", username="dr", role="clinician",
                               kind="password", reason=None if success else "bad password",
                               address="10.0.0.9"))
    for path in sorted(EXAMPLES.glob("auditevent-*.json")):
        out.append(json.loads(path.read_text(), parse_float=Decimal))
    return out


def test_split_extraction_equals_the_whole() -> None:
    indexer = AuditIndexer(BASE)
    cases = events()
    assert len(cases) >= 17
    for event in cases * 2:  # the second time from the cache
        whole = index_resource(event, base_url=BASE)
        assert whole  # every event has searchable values
        assert comparable(indexer.index(event)) == comparable(whole), event.get("id")
