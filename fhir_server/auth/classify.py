"""Which FHIR interaction a request is, from its method and its path under the FHIR base.

Shared by enforcement (which letter the scopes must grant) and the audit trail
(the AuditEvent's subtype and action). Uses the path only, never the body or
the query values.
"""

from __future__ import annotations

from dataclasses import dataclass

# interaction code -> SMART v2 letter (c r u d s); None: decided elsewhere
LETTER = {
    "read": "r", "vread": "r", "search-type": "s", "history-instance": "s",
    "history-type": "s", "history-system": "s", "create": "c", "update": "u",
    "patch": "u", "delete": "d",
}
# interaction code -> AuditEvent.action
ACTION = {
    "read": "R", "vread": "R", "search-type": "R", "history-instance": "R",
    "history-type": "R", "history-system": "R", "create": "C", "update": "U",
    "patch": "U", "delete": "D", "transaction": "E", "batch": "E", "operation": "E",
    "capabilities": "R",
}
PUBLIC = frozenset({"metadata", ".well-known"})


@dataclass(frozen=True)
class Interaction:
    code: str  # read, vread, search-type, create, ..., operation, transaction-or-batch
    type_: str | None = None
    id_: str | None = None
    compartment: tuple[str, str] | None = None  # Patient/<id>/<type> searches
    operation: str | None = None  # "$submit"
    conditional: bool = False

    @property
    def letter(self) -> str | None:
        return LETTER.get(self.code)


def _typed(segment: str) -> bool:
    return bool(segment) and segment[0].isupper() and segment.isalnum()


def classify(method: str, path: str) -> Interaction | None:
    """The interaction of ``method path`` (path relative to the FHIR base); None when public."""
    parts = [p for p in path.strip("/").split("/") if p]
    method = method.upper()
    if parts and parts[0] in PUBLIC:
        return None
    op = next((p for p in parts if p.startswith("$")), None)
    if op is not None:
        head = parts[0] if _typed(parts[0]) else None
        inst = parts[1] if head and len(parts) == 3 else None
        return Interaction("operation", type_=head, id_=inst, operation=op)
    if not parts:
        return Interaction("transaction-or-batch" if method == "POST" else "unknown")
    if parts == ["_history"]:
        return Interaction("history-system")
    type_ = parts[0]
    n = len(parts)
    if n == 1:
        code = {"GET": "search-type", "HEAD": "search-type", "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete"}.get(method, "unknown")
        return Interaction(code, type_=type_, conditional=code in {"update", "patch", "delete"})
    if n == 2 and parts[1] == "_search":
        return Interaction("search-type", type_=type_)
    if n == 2 and parts[1] == "_history":
        return Interaction("history-type", type_=type_)
    if n == 2:
        code = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "unknown")
        return Interaction(code, type_=type_, id_=parts[1])
    if n == 3 and parts[2] == "_history":
        return Interaction("history-instance", type_=type_, id_=parts[1])
    if n == 4 and parts[2] == "_history":
        return Interaction("vread", type_=type_, id_=parts[1])
    if n == 3:
        return Interaction("search-type", type_=parts[2], compartment=(type_, parts[1]))
    return Interaction("unknown", type_=type_)
