"""Request-body limits, enforced while the body arrives (plain ASGI middleware).

Each request has one limit, by where it goes: a batch or transaction Bundle (``POST /fhir``)
``FHIR_MAX_BUNDLE_BYTES``; an operation whose input is an X12 file (``$import-835``)
``FHIR_MAX_X12_BYTES``; the authorization server's forms (``/auth/...``) a fixed 16 KiB;
everything else ``FHIR_MAX_BODY_BYTES``.

A ``Content-Length`` over the limit is answered 413 at once, before a byte of the body is
read. A body sent without one (chunked) or longer than it said is counted as it streams
in: the message that passes the limit raises 413 in whatever is reading the body, so no
more than the limit is ever held. Either way the answer says ``Connection: close``, as the
rest of the body is never read. The answers are OperationOutcomes (``too-long``) naming the
setting that limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api.negotiation import fhir_response_for_error
from fhir_server.core.config import Settings
from fhir_server.core.errors import PayloadTooLarge

FHIR_BASE = "/fhir"
AUTH_PREFIX = "/auth/"
# A token request with a signed client assertion, or a sign-in form with a long scope list,
# is a few KB: nothing the authorization server reads comes near this.
AUTH_FORM_BYTES = 16 * 1024
CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class Limit:
    """The most bytes a request's body may have, and what sets that."""

    most: int
    setting: str


@dataclass(frozen=True)
class BodyLimits:
    resource: Limit
    bundle: Limit
    x12: Limit
    x12_operations: frozenset[str]  # "$import-835": operations whose input is an X12 file
    auth: Limit = Limit(AUTH_FORM_BYTES, "the authorization server's limit")

    @classmethod
    def of(cls, settings: Settings, *, x12_operations: frozenset[str]) -> BodyLimits:
        return cls(resource=Limit(settings.fhir_max_body_bytes, "FHIR_MAX_BODY_BYTES"),
                   bundle=Limit(settings.fhir_max_bundle_bytes, "FHIR_MAX_BUNDLE_BYTES"),
                   x12=Limit(settings.fhir_max_x12_bytes, "FHIR_MAX_X12_BYTES"),
                   x12_operations=x12_operations)

    def for_path(self, path: str) -> Limit:
        if path.startswith(AUTH_PREFIX):
            return self.auth
        if path in (FHIR_BASE, f"{FHIR_BASE}/"):
            return self.bundle
        if path.startswith(f"{FHIR_BASE}/") and path.rsplit("/", 1)[1] in self.x12_operations:
            return self.x12
        return self.resource


def too_large(limit: Limit) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than {limit.most} bytes, the most "
                           f"this endpoint takes ({limit.setting})", code="too-long",
                           headers=CLOSE)


def declared_length(headers: Headers) -> int | None:
    """The Content-Length, when there is one that is a number (the HTTP server refuses
    others before the app sees the request)."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


class BodyLimit:
    """Refuses request bodies over their limit (``BodyLimits``) while they arrive."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope["path"])
        declared = declared_length(Headers(scope=scope))
        if declared is not None and declared > limit.most:
            error = too_large(limit)
            answer = fhir_response_for_error(error.status, error.outcome(), error.headers)
            await answer(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.most:
                    raise too_large(limit)
            return message

        await self.app(scope, counted, send)
