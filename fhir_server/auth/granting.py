"""Which scopes a token gets: requested, within the client's registration, bounded by the role."""

from __future__ import annotations

from fhir_server.auth.roles import bound_scopes
from fhir_server.auth.scopes import Scope, parse_scopes

REFRESH_SCOPES = ("offline_access", "online_access")


def _intersection(requested: Scope, allowed: Scope) -> Scope | None:
    if requested.context != allowed.context:
        return None
    if allowed.type == "*":
        type_ = requested.type
    elif requested.type in ("*", allowed.type):
        type_ = allowed.type
    else:
        return None
    letters = requested.interactions & allowed.interactions
    if not letters:
        return None
    restriction = tuple(dict.fromkeys(requested.restriction + allowed.restriction))
    return Scope(context=requested.context, type=type_, interactions=letters,
                 restriction=restriction)


def within(requested: str, allowed: str) -> list[str]:
    """The requested scopes as far as ``allowed`` permits them.

    A requested resource scope that one allowed scope covers is kept as written
    (a v1 ``patient/*.read`` stays v1); otherwise it becomes its intersections with
    the allowed scopes (``patient/*.cruds`` within ``patient/*.rs`` is ``patient/*.rs``).
    Non-resource scopes are kept when allowed. Invalid scopes are dropped.
    """
    req, ok = parse_scopes(requested), parse_scopes(allowed)
    out: list[str] = [s for s in req.other if s in ok.other]
    texts = [t for t in requested.split() if t not in req.other]
    for text, scope in zip(_valid_texts(texts), req.resource, strict=True):
        if any(a.covers(scope) for a in ok.resource):
            out.append(text)
            continue
        out.extend(str(s) for a in ok.resource if (s := _intersection(scope, a)) is not None)
    return list(dict.fromkeys(out))


def _valid_texts(texts: list[str]) -> list[str]:
    """The texts of the valid resource scopes, in parse order (parse_scopes drops repeats)."""
    out: list[str] = []
    for text in dict.fromkeys(texts):
        if parse_scopes(text).resource:
            out.append(text)
    return out


def granted(requested: str, *, allowed: str, role: str | None) -> list[str]:
    """Requested within the client's allowed scopes, then bounded by the user's role."""
    scopes = within(requested, allowed)
    return bound_scopes(role, scopes) if role is not None else scopes


def narrower(requested: str, *, original: str) -> bool:
    """Whether every requested scope is within the original grant (a refresh may only narrow)."""
    req, orig = parse_scopes(requested), parse_scopes(original)
    return (not req.invalid and all(s in orig.other for s in req.other)
            and all(any(o.covers(r) for o in orig.resource) for r in req.resource))
