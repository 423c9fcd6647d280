"""Roles: what a user may do, whatever scopes the app asked for (``data/roles.json``).

The clinic separates duties: ``admin`` (everything, and the audit trail),
``clinician`` (clinical records read/write, the rest read), ``front-desk``
(registration, scheduling, coverage and eligibility), ``billing`` (coverage,
claims, invoices, payments; reads what a claim needs) and ``patient`` (a
patient user: ``patient/`` scopes only). The table is data: groups of resource
types, and per role the letters (``c r u d s``) granted on groups, single
types or ``*``.

``bound_scopes`` narrows the scopes of a user's token when it is issued;
``role_allows`` re-checks the same table on every request, so a token issued
before a role changed cannot do more than the table says now.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fhir_server.auth.scopes import InvalidScope, Scope, parse_scope

AUDIT_TYPE = "AuditEvent"
AUDIT_ROLE = "admin"
_TABLE = Path(__file__).resolve().parent.parent / "data" / "roles.json"


@cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_TABLE.read_text())
    return data


def roles() -> tuple[str, ...]:
    return tuple(_table()["roles"])


ROLES = roles()


def _role(role: str) -> dict[str, Any]:
    found: dict[str, Any] | None = _table()["roles"].get(role)
    if found is None:
        raise ValueError(f"unknown role '{role[:40]}'; roles are {', '.join(ROLES)}")
    return found


@cache
def grants_of(role: str) -> dict[str, frozenset[str]]:
    """Resource type (or ``*``) -> letters, with groups expanded."""
    groups: dict[str, list[str]] = _table()["groups"]
    out: dict[str, set[str]] = {}
    for name, letters in _role(role)["grants"].items():
        for type_ in groups.get(name, [name]):
            out.setdefault(type_, set()).update(letters)
    return {t: frozenset(v) for t, v in out.items()}


def role_letters(role: str, type_: str) -> frozenset[str]:
    """The letters a role grants on one resource type (AuditEvent: read for admin only)."""
    grants = grants_of(role)
    if type_ == AUDIT_TYPE:
        return frozenset("rs") if role == AUDIT_ROLE else frozenset()
    return grants.get("*", frozenset()) | grants.get(type_, frozenset())


def role_contexts(role: str) -> frozenset[str]:
    return frozenset(_role(role)["contexts"])


def role_allows(role: str | None, *, context: str, type_: str, letter: str) -> bool:
    """Whether a user with this role may use a scope of this context for this interaction.

    ``None`` (a token without a user) is not bounded by any role.
    """
    if role is None:
        return True
    if role not in _table()["roles"]:
        return False
    return context in role_contexts(role) and letter in role_letters(role, type_)


def _bound_one(role: str, scope: Scope) -> list[Scope]:
    if scope.context not in role_contexts(role):
        return []
    if scope.type != "*":
        letters = scope.interactions & role_letters(role, scope.type)
        return [scope.narrowed(letters)] if letters else []
    grants = grants_of(role)
    out: list[Scope] = []
    star = scope.interactions & grants.get("*", frozenset())
    if star:
        out.append(scope.narrowed(star))
    for type_ in sorted(t for t in grants if t != "*"):
        letters = scope.interactions & role_letters(role, type_)
        if letters and not letters <= star:
            out.append(scope.narrowed(letters, type_))
    return out


def bound_scopes(role: str | None, requested: list[str]) -> list[str]:
    """The scopes a user with this role is granted out of the requested ones.

    Each resource scope is narrowed to the letters the role allows on its type
    (a ``*`` scope becomes one scope per type the role grants anything on, unless
    the role itself grants ``*``), and dropped when nothing is left or when the
    role may not hold its context. Non-resource scopes are kept; invalid ones
    are dropped. ``None`` (no user) leaves the resource scopes as they are.
    """
    out: list[str] = []
    for text in requested:
        try:
            scope = parse_scope(text)
        except InvalidScope:
            continue
        if scope is None:
            out.append(text)
        elif role is None:
            out.append(str(scope))
        else:
            out.extend(str(s) for s in _bound_one(role, scope))
    return list(dict.fromkeys(out))
