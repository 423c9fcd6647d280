"""The search parameters conditional interactions need: ``_id`` and ``identifier``.

Token values are stored as scalar strings so that every lookup is an equality
match (which both MongoDB and FerretDB serve from an index):
``"system|code"`` for an exact match, ``"*|code"`` for a code in any system and
``"system|"`` for any code of a system. An identifier without a system is
stored as ``"|code"`` and ``"*|code"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.validation import resource_class

RESULT_PARAMETERS = frozenset({"_count", "_format", "_pretty", "_summary", "_elements", "_total"})


def token_keys(system: str | None, code: str | None) -> list[str]:
    """The stored keys of one token (system and code as the resource has them)."""
    keys: list[str] = []
    if code:
        keys.append(f"{system or ''}|{code}")
        keys.append(f"*|{code}")
    if system:
        keys.append(f"{system}|")
    return keys


def token_query_key(value: str) -> str:
    """The stored key a token search value matches."""
    if "|" not in value:
        if not value:
            raise Invalid("A token search value may not be empty")
        return f"*|{value}"
    system, _, code = value.partition("|")
    if not system and not code:
        raise Invalid("A token search value needs a system or a code")
    return f"{system}|{code}"


def index_values(resource: Mapping[str, Any]) -> dict[str, list[str]]:
    """Search values of a resource, stored beside it as ``ix``."""
    keys: list[str] = []
    identifiers = resource.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    for ident in identifiers or []:
        if isinstance(ident, dict):
            keys.extend(token_keys(ident.get("system"), ident.get("value")))
    return {"identifier": sorted(set(keys))} if keys else {}


def supports_identifier(type_: str) -> bool:
    cls = resource_class(type_)
    return cls is not None and any(f.alias == "identifier" for f in cls.model_fields.values())


def compile_query(type_: str, params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """AND across parameters, OR across comma-separated values."""
    clauses: list[dict[str, Any]] = []
    for name, raw in params:
        base = name.split(":", 1)[0]
        if base in RESULT_PARAMETERS:
            continue
        if ":" in name:
            raise Invalid(f"Modifier on search parameter '{name[:64]}' is not supported",
                          expression=[name[:64]])
        values = raw.split(",")
        if base == "_id":
            clauses.append({"_id": {"$in": values}} if len(values) > 1 else {"_id": values[0]})
        elif base == "identifier" and supports_identifier(type_):
            keys = [token_query_key(v) for v in values]
            clauses.append({"ix.identifier": {"$in": keys}} if len(keys) > 1
                           else {"ix.identifier": keys[0]})
        else:
            raise Invalid(f"Unknown search parameter '{base[:64]}' for resource type {type_}",
                          expression=[base[:64]], code="not-supported")
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
