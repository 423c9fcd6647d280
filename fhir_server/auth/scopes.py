"""SMART App Launch scopes: the v2 grammar (``patient/Observation.rs?category=laboratory``)
and the v1 one (``user/Claim.write``), parsed into ``Scope`` values.

A resource scope is ``context/type.permissions[?restriction]``:

* ``context``: ``patient`` (confined to the launch patient's compartment), ``user``
  (what the signed-in user may do, bounded by the user's role) or ``system``
  (a backend client, no user);
* ``type``: a resource type this server serves, or ``*``;
* ``permissions``: v2 letters ``c r u d s`` in that order, each at most once, or
  v1 ``read`` (= ``rs``), ``write`` (= ``cud``) or ``*`` (= ``cruds``);
* ``restriction`` (v2 only, on a named type): ``?param=value&...``, search
  parameters of that type that a resource must match.

Non-resource scopes (``openid``, ``fhirUser``, ``launch``, ...) are kept apart
by ``parse_scopes``; anything else is invalid, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
OTHER_SCOPES = frozenset({
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
    "offline_access", "online_access",
})
_SCOPE = re.compile(r"^(?P<context>[a-z]+)/(?P<type>\*|[A-Za-z]+)\.(?P<perm>[a-z]+|\*)"
                    r"(?:\?(?P<query>.*))?$")
_V2 = re.compile(r"^c?r?u?d?s?$")


class InvalidScope(ValueError):
    """A scope string this server cannot grant, with the reason (safe to show a client)."""

    def __init__(self, scope: str, reason: str) -> None:
        super().__init__(f"{scope[:100]}: {reason}")
        self.scope = scope
        self.reason = reason


@dataclass(frozen=True)
class Scope:
    """One resource scope."""

    context: str
    type: str
    interactions: frozenset[str]
    restriction: tuple[tuple[str, str], ...] = ()

    def covers(self, other: Scope) -> bool:
        """Whether ``other`` asks for nothing beyond this scope.

        Same context, same type (or this one is ``*``), a subset of the
        interactions, and every restriction of this scope also in ``other``
        (``other`` is at least as narrow).
        """
        return (self.context == other.context
                and self.type in ("*", other.type)
                and other.interactions <= self.interactions
                and set(self.restriction) <= set(other.restriction))

    def allows(self, type_: str, letter: str) -> bool:
        return letter in self.interactions and self.type in ("*", type_)

    def narrowed(self, letters: frozenset[str], type_: str | None = None) -> Scope:
        return Scope(context=self.context, type=type_ or self.type,
                     interactions=letters, restriction=self.restriction)

    def __str__(self) -> str:
        letters = "".join(c for c in LETTERS if c in self.interactions)
        text = f"{self.context}/{self.type}.{letters}"
        return f"{text}?{urlencode(list(self.restriction))}" if self.restriction else text


@dataclass(frozen=True)
class ParsedScopes:
    """A space-separated scope string, sorted out."""

    resource: list[Scope] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    invalid: list[InvalidScope] = field(default_factory=list)

    @property
    def launch_patient(self) -> bool:
        return "launch/patient" in self.other

    @property
    def launch_encounter(self) -> bool:
        return "launch/encounter" in self.other


def _letters(scope: str, perm: str) -> frozenset[str]:
    if perm in V1_PERMISSIONS:
        return frozenset(V1_PERMISSIONS[perm])
    if not perm or not _V2.match(perm):
        raise InvalidScope(scope, f"'{perm[:20]}' is not a permission: use the letters c r u d s "
                                  "in that order, or read, write or *")
    return frozenset(perm)


def _restriction(scope: str, type_: str, query: str) -> tuple[tuple[str, str], ...]:
    from fhir_server.search.registry import lookup

    if type_ == "*":
        raise InvalidScope(scope, "a ?restriction needs a resource type, not *")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidScope(scope, "the restriction is not a query string") from None
    for name, value in pairs:
        base = name.split(":", 1)[0].split(".", 1)[0]
        if base not in {"_id", "_lastUpdated"} and lookup(type_, base) is None:
            raise InvalidScope(scope, f"'{base[:40]}' is not a search parameter of {type_}")
        if not value:
            raise InvalidScope(scope, f"the restriction on '{base[:40]}' has no value")
    return tuple(pairs)


def parse_scope(s: str) -> Scope | None:
    """A resource scope, or None for a known non-resource scope (``openid``, ``launch``, ...).

    Raises ``InvalidScope`` with the reason for anything else.
    """
    from fhir_server.core.models import resource_class

    if s in OTHER_SCOPES:
        return None
    match = _SCOPE.match(s)
    if match is None:
        raise InvalidScope(s, "not a scope this server knows (context/Type.permissions, "
                              "or openid, fhirUser, launch, launch/patient, launch/encounter, "
                              "offline_access, online_access)")
    context, type_, perm, query = (match.group("context"), match.group("type"),
                                   match.group("perm"), match.group("query"))
    if context not in CONTEXTS:
        raise InvalidScope(s, f"'{context[:20]}' is not a context: use patient, user or system")
    if type_ != "*" and resource_class(type_) is None:
        raise InvalidScope(s, f"'{type_[:64]}' is not a resource type this server serves")
    if query is not None and perm in ("read", "write"):
        raise InvalidScope(s, "restrictions are a SMART v2 feature; use the letters c r u d s")
    letters = _letters(s, perm)
    restriction = _restriction(s, type_, query) if query is not None else ()
    return Scope(context=context, type=type_, interactions=letters, restriction=restriction)


def parse_scopes(text: str) -> ParsedScopes:
    """Every scope of a space-separated string: resource scopes, others, invalid ones."""
    out = ParsedScopes()
    seen: set[str] = set()
    for item in text.split():
        if item in seen:
            continue
        seen.add(item)
        try:
            scope = parse_scope(item)
        except InvalidScope as error:
            out.invalid.append(error)
            continue
        if scope is None:
            out.other.append(item)
        else:
            out.resource.append(scope)
    return out
