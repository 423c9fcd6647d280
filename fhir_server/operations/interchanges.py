"""X12 interchanges kept as DocumentReferences, so billing staff can see exactly what went
out and what came back: ``DocumentReference?related=Claim/[id]`` (or the request, or the
PaymentReconciliation), ``type`` = the transaction (837P, 999, 277CA, 835, 270, 271),
``category`` = sent or received, the interchange itself as the attachment's data."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from fhir_server.adapters.payer import Exchanged
from fhir_server.operations.common import now_instant
from fhir_server.revenue.records import Resource
from fhir_server.terminology.systems import X12_DOCUMENT

X12_MEDIA = "application/edi-x12"


def interchange_document(exchanged: Exchanged, *, related: list[str],
                         subject: str | None = None) -> Resource:
    data = exchanged.text.encode("ascii", "replace")
    document: Resource = {
        "resourceType": "DocumentReference", "id": str(uuid.uuid4()), "status": "current",
        "type": {"coding": [{"system": X12_DOCUMENT, "code": exchanged.kind}],
                 "text": f"X12 {exchanged.kind}"},
        "category": [{"coding": [{"system": X12_DOCUMENT, "code": exchanged.direction}]}],
        "date": now_instant(),
        "description": f"X12 {exchanged.kind} {exchanged.direction}, ISA13 "
                       f"{exchanged.control or 'unknown'}",
        "content": [{"attachment": {
            "contentType": exchanged.content_type, "data": base64.b64encode(data).decode(),
            "size": len(data), "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
            "title": f"{exchanged.kind} {exchanged.control}".strip()}}],
    }
    if exchanged.control:
        document["masterIdentifier"] = {"system": f"urn:fhir-rcm-server:x12-{exchanged.direction}",
                                        "value": f"{exchanged.kind}-{exchanged.control}-"
                                                 f"{document['id'][:8]}"}
    if subject:
        document["subject"] = {"reference": subject}
    if related:
        document["context"] = {"related": [{"reference": r} for r in related]}
    return document


def documents(exchanged: list[Exchanged], *, related: list[str],
              subject: str | None = None) -> list[tuple[dict[str, Any], int | None]]:
    """New DocumentReferences for a commit (``commit_new``'s (resource, previous) pairs)."""
    return [(interchange_document(e, related=related, subject=subject), None) for e in exchanged]
