"""Enforcement on the FHIR routes: the request dependency and ``authorize`` for operations.

``enforce_request`` (a dependency of every /fhir router but the CapabilityStatement)
reads ``Authorization: Bearer``, verifies the token (``app.state.auth``), puts the
``Principal`` on ``request.state.principal`` (None with FHIR_AUTH=off), binds the
caller's ``Access`` into a ``ScopedRepository`` (``request.state.repo``, what
``deps.RepoDep`` hands the routes) and checks the interaction's letter on its type.
A browser's cross-origin request is refused (403) when its Origin is not one of the
token's client's (``auth/origins.py``).
Instance-level rules (compartment, restrictions) are the scoped repository's.

Operation routes call one function::

    principal = await authorize(request, type_="Claim", interaction="create",
                                resource=claim_json)          # or id_="..." for an instance
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from fhir_server.auth.access import Access
from fhir_server.auth.classify import LETTER, Interaction, classify
from fhir_server.auth.origins import origin_refusal
from fhir_server.auth.principal import Principal, principal_of
from fhir_server.auth.scoped import ScopedRepository
from fhir_server.core.config import Settings
from fhir_server.core.errors import Forbidden, NotFound, Unauthorized
from fhir_server.core.models import resource_class
from fhir_server.search.extract import index_resource

FHIR_PREFIX = "/fhir"
REALM = 'Bearer realm="fhir"'


def _challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    value = REALM
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return {"WWW-Authenticate": value}


async def authenticate(request: Request) -> Principal:
    """The caller's Principal from ``Authorization: Bearer <token>``; 401 otherwise."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("This request needs an access token (Authorization: Bearer ...)",
                           headers=_challenge())
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <access token>'",
                           headers=_challenge("invalid_request"))
    try:
        grant = await request.app.state.auth.verify_access_token(token.strip())
    except Unauthorized as error:
        raise Unauthorized(error.diagnostics, headers=_challenge(
            "invalid_token", "The access token is invalid, expired or revoked")) from None
    return principal_of(grant)


def _check_interaction(access: Access, interaction: Interaction, *, searches: bool) -> None:
    letter = interaction.letter
    if interaction.code == "history-system":
        if access.principal is not None and not access.principal.may_any("s"):
            raise Forbidden("The access token does not permit history")
        return
    if letter is None or interaction.type_ is None or resource_class(interaction.type_) is None:
        return  # operations, Bundles (checked per entry) and unknown types (the route's 404)
    access.require(interaction.type_, letter)
    if searches:  # a conditional interaction finds its target by a search
        access.require(interaction.type_, "s")


async def enforce_request(request: Request) -> None:
    """Dependency of the /fhir routers: authenticate, bind access, check the interaction."""
    settings: Settings = request.app.state.settings
    path = request.url.path
    interaction = classify(request.method, path[len(FHIR_PREFIX):]
                           if path.startswith(FHIR_PREFIX) else path)
    request.state.interaction = interaction
    principal = None if settings.fhir_auth == "off" else await authenticate(request)
    request.state.principal = principal  # before a refusal: the AuditEvent names the caller
    if principal is not None and (refusal := await origin_refusal(request, principal.client_id)):
        raise Forbidden(refusal)
    access = Access(principal=principal, repo=request.app.state.repo, settings=settings)
    request.state.access = access
    request.state.repo = ScopedRepository(request.app.state.repo, access)
    if interaction is not None:
        conditional = interaction.conditional or (
            interaction.code == "create" and "if-none-exist" in request.headers)
        _check_interaction(access, interaction, searches=conditional)


def request_access(request: Request) -> tuple[Access, ScopedRepository]:
    access: Access | None = getattr(request.state, "access", None)
    repo: ScopedRepository | None = getattr(request.state, "repo", None)
    if access is None or repo is None:
        raise RuntimeError("enforce_request did not run for this route")
    return access, repo


async def authorize(request: Request, *, type_: str, interaction: str,
                    resource: dict[str, Any] | None = None,
                    id_: str | None = None) -> Principal | None:
    """Check one interaction of an operation (or any route) against the caller's token.

    ``interaction`` is a FHIR interaction code (read, search-type, create, update,
    delete, ...) or a SMART letter (c r u d s). 403 when no scope grants it on
    ``type_``; with ``id_``, 404 when that resource is outside the token's terms
    (its patient's compartment, its restriction); with ``resource`` (a resource
    the operation reads or is about to write), 404 (reads) or 403 (writes) when
    that resource is outside them. Returns the principal (None: FHIR_AUTH=off).
    """
    access, repo = request_access(request)
    letter = LETTER.get(interaction, interaction)
    if letter not in ("c", "r", "u", "d", "s"):
        raise ValueError(f"unknown interaction {interaction!r}")
    access.require(type_, letter)
    if id_ is not None and not await repo.readable(type_=type_, id_=id_, letter=letter):
        raise NotFound(f"{type_}/{id_} is not known")
    if resource is not None:
        index = index_resource(resource, base_url=access.settings.base_url)
        if not await access.admits(type_, letter, id_=str(resource.get("id", "")), index=index):
            if letter in "rs":
                raise NotFound(f"{type_}/{resource.get('id', '')} is not known")
            raise Forbidden(f"The access token does not permit this {type_}: it is outside "
                            "the token's patient compartment or scope restriction")
    return access.principal
