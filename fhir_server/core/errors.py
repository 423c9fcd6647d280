"""FHIR errors, and the OperationOutcomes they make.

Every failure a client can cause is a ``FhirError`` with an HTTP status, an
OperationOutcome issue code, a diagnostic written for the client, and the
FHIRPath ``expression`` of the offending element where there is one.
Diagnostics name elements and identifiers, never resource content. Turning
exceptions into HTTP answers is the HTTP layer's (``fhir_server/api/error_handlers.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error answered to the client as an OperationOutcome."""

    status: int = 400
    code: str = "processing"
    diagnostics: str = "The request could not be processed"
    expression: Sequence[str] = ()
    extra_issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    @property
    def issues(self) -> list[Issue]:
        first = Issue(self.code, self.diagnostics, "error", tuple(self.expression))
        return [first, *self.extra_issues]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def _error(status: int, code: str):  # type: ignore[no-untyped-def]
    def init(
        self: FhirError,
        diagnostics: str,
        *,
        expression: Sequence[str] = (),
        code: str = code,
        extra_issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        FhirError.__init__(
            self,
            status=status,
            code=code,
            diagnostics=diagnostics,
            expression=tuple(expression),
            extra_issues=list(extra_issues or []),
            headers=dict(headers or {}),
        )

    return init


class Invalid(FhirError):
    """400: the request or the resource is not valid."""

    __init__ = _error(400, "invalid")


class Unauthorized(FhirError):
    __init__ = _error(401, "login")


class Forbidden(FhirError):
    __init__ = _error(403, "forbidden")


class NotFound(FhirError):
    __init__ = _error(404, "not-found")


class MethodNotAllowed(FhirError):
    __init__ = _error(405, "not-supported")


class NotAcceptable(FhirError):
    __init__ = _error(406, "not-supported")


class Conflict(FhirError):
    __init__ = _error(409, "conflict")


class Gone(FhirError):
    __init__ = _error(410, "deleted")


class PreconditionFailed(FhirError):
    __init__ = _error(412, "conflict")


class PayloadTooLarge(FhirError):
    __init__ = _error(413, "too-costly")


class UnsupportedMediaType(FhirError):
    __init__ = _error(415, "not-supported")


class Unprocessable(FhirError):
    __init__ = _error(422, "processing")


class TooManyRequests(FhirError):
    __init__ = _error(429, "throttled")


class Upstream(FhirError):
    __init__ = _error(502, "transient")


class UpstreamTimeout(FhirError):
    __init__ = _error(504, "timeout")
