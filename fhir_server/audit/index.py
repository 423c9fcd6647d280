"""Search values of the server's AuditEvents, computed in two parts.

An AuditEvent's search parameters each read one top-level element (``agent``,
``entity``, ``recorded``, ``source``...; ``patient`` is a union of two). The events a
server writes repeat their agent, source, type, subtype, action and outcome from request
to request (one client, one user, one kind of interaction), so the values of that part
are extracted once and kept, and only the rest (when, which entities) is extracted per
event; ``merge_index`` puts the two together. The same extraction as for any resource
(``search/extract.py``): ``tests/audit/test_audit_index.py`` compares the two on the
events the server makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fhir_server.search.extract import index_resource, merge_index

AUDIT_TYPE = "AuditEvent"
# The elements that repeat between events of one client and interaction.
REPEATED = ("type", "subtype", "action", "outcome", "outcomeDesc", "agent", "source")
CACHE_MAX = 4096


class AuditIndexer:
    """``index(event)``: the ``ix`` document of an AuditEvent, its repeated part cached."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._repeated: dict[bytes, dict[str, Any]] = {}

    def index(self, event: Mapping[str, Any]) -> dict[str, Any]:
        repeated = {k: event[k] for k in REPEATED if k in event}
        rest = {k: v for k, v in event.items() if k not in REPEATED}
        key = orjson.dumps(repeated, option=orjson.OPT_SORT_KEYS)
        shared = self._repeated.get(key)
        if shared is None:
            if len(self._repeated) >= CACHE_MAX:
                self._repeated.clear()
            shared = index_resource({**repeated, "resourceType": AUDIT_TYPE},
                                    base_url=self.base_url)
            self._repeated[key] = shared
        own = index_resource({**rest, "resourceType": AUDIT_TYPE}, base_url=self.base_url)
        return merge_index(shared, own)
