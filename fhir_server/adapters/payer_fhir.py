"""The FHIR payer adapter: ``$submit`` calls to a payer's FHIR endpoint.

Timeouts, retries, the circuit breaker and OAuth are ``peer_http.PeerHttp``'s, shared
with the X12 and EHR adapters. What is sent travels as one resource with the resources
it references contained (``fhir_server/operations/common.py`` ``pack``); nothing of it is logged. The
payer's answer is read under FHIR_MAX_BUNDLE_BYTES (``peer_limits.py``).
"""

from __future__ import annotations

from typing import Any

import httpx

from fhir_server.adapters.payer import PayerAnswer, PayerEndpoint
from fhir_server.adapters.peer_errors import PayerRefused, unreachable
from fhir_server.adapters.peer_http import FHIR_JSON, PeerHttp
from fhir_server.adapters.resilience import CircuitBreaker
from fhir_server.core.config import Settings
from fhir_server.core.errors import Issue
from fhir_server.core.fhirjson import dumps, parse_json

__all__ = ["FhirPayerAdapter", "PayerRefused"]
VERDICT_STATUSES = (400, 422)  # the payer judged what it was sent (invalid, business rule)


class FhirPayerAdapter:
    def __init__(self, settings: Settings, *, http: PeerHttp | None = None) -> None:
        self.http = http or PeerHttp(settings)

    async def close(self) -> None:
        await self.http.close()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        return self.http.breaker(endpoint)

    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> PayerAnswer:
        # Asking about coverage changes nothing the clinic relies on: safe to repeat.
        return await self._submit(endpoint, "CoverageEligibilityRequest/$submit", request,
                                  expect="CoverageEligibilityResponse", idempotent=True)

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> PayerAnswer:
        return await self._submit(endpoint, "Claim/$submit", claim, expect="ClaimResponse",
                                  idempotent=False)

    async def _submit(self, endpoint: PayerEndpoint, path: str, resource: dict[str, Any], *,
                      expect: str, idempotent: bool) -> PayerAnswer:
        depth = self.http.settings.fhir_max_json_depth

        def read(response: httpx.Response) -> PayerAnswer:
            return PayerAnswer(_answer(endpoint, response, expect=expect, max_depth=depth))

        return await self.http.call(
            endpoint, "POST", f"{endpoint.address.rstrip('/')}/{path}", body=dumps(resource),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, idempotent=idempotent,
            read=read, max_bytes=self.http.settings.fhir_max_bundle_bytes)


def _answer(endpoint: PayerEndpoint, response: httpx.Response, *, expect: str,
            max_depth: int) -> dict[str, Any]:
    try:
        payload = (parse_json(response.content, what="payer's answer", max_depth=max_depth)
                   if response.content else None)
    except Exception:
        payload = None
    status = response.status_code
    if status >= 400:
        # A verdict on what was sent (400, 422) passes on; any other status is a failure.
        issues = _payer_issues(payload) if status in VERDICT_STATUSES else []
        raise unreachable("payer", endpoint.reference, f"answered HTTP {status}",
                          kind=PayerRefused, issues=issues)
    if not isinstance(payload, dict) or payload.get("resourceType") != expect:
        raise unreachable("payer", endpoint.reference, f"answered HTTP {status} without a "
                          f"{expect}", kind=PayerRefused)
    return payload


def _payer_issues(payload: Any) -> list[Issue]:
    """The payer's issue codes and locations (not its text: it may quote what was sent)."""
    if not isinstance(payload, dict) or payload.get("resourceType") != "OperationOutcome":
        return []
    out = []
    for issue in payload.get("issue", [])[:5]:
        if isinstance(issue, dict):
            expression = [str(e)[:200] for e in issue.get("expression", []) if isinstance(e, str)]
            out.append(Issue(str(issue.get("code", "exception"))[:32],
                             "The payer reported this issue", "error", tuple(expression)))
    return out
