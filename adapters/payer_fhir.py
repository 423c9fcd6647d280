"""The FHIR payer adapter: ``$submit`` calls to a payer's FHIR endpoint over httpx.

Resilience, per the house rules for adapters:

* connect and read timeouts, and one overall deadline per call (connect + read
  timeout): a payer that is down or slow answers 502/504 within it, never a hang;
* retries with exponential backoff and full jitter, for idempotent calls, and for
  any call whose request never reached the payer (connection refused or not
  established); a claim submission that may have reached the payer is not repeated;
* a circuit breaker per endpoint: after N consecutive failures calls fail at once
  (502) until a trial call succeeds.

The resilience lives in ``adapters/fhir_http.py``, shared with the EHR adapter. What is
sent travels as one resource with the resources it references contained; nothing of it
is logged.
"""

from __future__ import annotations

from typing import Any

import httpx

from adapters.fhir_http import FhirHttp, Refused
from adapters.payer import PayerEndpoint
from adapters.payer_oauth import DEFAULT_SCOPE
from adapters.resilience import CircuitBreaker
from fhir_server.config import Settings
from fhir_server.errors import Issue
from fhir_server.fhirjson import dumps, parse_json


class PayerRefused(Refused):
    """The payer answered, but not with what was asked (a 4xx, or another resource)."""


class FhirPayerAdapter:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.settings = settings
        self.client = FhirHttp(settings, peer="payer", default_scope=DEFAULT_SCOPE,
                               transport=transport)

    async def close(self) -> None:
        await self.client.close()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        return self.client.breaker(endpoint)

    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> dict[str, Any]:
        # Asking about coverage changes nothing the clinic relies on: safe to repeat.
        return await self._submit(endpoint, "CoverageEligibilityRequest/$submit", request,
                                  expect="CoverageEligibilityResponse", idempotent=True)

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> dict[str, Any]:
        return await self._submit(endpoint, "Claim/$submit", claim, expect="ClaimResponse",
                                  idempotent=False)

    async def _submit(self, endpoint: PayerEndpoint, path: str, resource: dict[str, Any], *,
                      expect: str, idempotent: bool) -> dict[str, Any]:
        url = f"{endpoint.address.rstrip('/')}/{path}"
        response = await self.client.request(endpoint, "POST", url, body=dumps(resource),
                                             idempotent=idempotent)
        try:
            payload = parse_json(response.content) if response.content else None
        except Exception:
            payload = None
        if response.status_code >= 400:
            self.client.breaker(endpoint).succeeded()  # it answered: the endpoint is up
            raise PayerRefused(f"The payer at {endpoint.reference} refused the request "
                               f"(HTTP {response.status_code})",
                               extra_issues=_payer_issues(payload))
        if not isinstance(payload, dict) or payload.get("resourceType") != expect:
            raise PayerRefused(f"The payer at {endpoint.reference} did not answer with a "
                               f"{expect}")
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
