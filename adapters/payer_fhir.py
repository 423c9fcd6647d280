"""The FHIR payer adapter: ``$submit`` calls to a payer's FHIR endpoint over httpx.

Resilience, per the house rules for adapters:

* connect and read timeouts, and one overall deadline per call (connect + read
  timeout): a payer that is down or slow answers 502/504 within it, never a hang;
* retries with exponential backoff and full jitter, for idempotent calls, and for
  any call whose request never reached the payer (connection refused or not
  established); a claim submission that may have reached the payer is not repeated;
* a circuit breaker per endpoint: after N consecutive failures calls fail at once
  (502) until a trial call succeeds.

What is sent travels as one resource with the resources it references contained
(see ``operations/outbound.py``); nothing of it is logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from adapters.payer import PayerEndpoint
from adapters.payer_oauth import TokenSource, load_client_key
from adapters.resilience import CircuitBreaker, backoff_delay
from fhir_server.config import Settings
from fhir_server.errors import Issue, Upstream, UpstreamTimeout
from fhir_server.fhirjson import dumps, parse_json

log = logging.getLogger("adapters.payer_fhir")

FHIR_JSON = "application/fhir+json"


class PayerRefused(Upstream):
    """The payer answered, but not with what was asked (a 4xx, or another resource)."""


class _Retry(Exception):
    def __init__(self, error: Upstream | UpstreamTimeout) -> None:
        super().__init__(error.diagnostics)
        self.error = error


class FhirPayerAdapter:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.settings = settings
        self.timeout = httpx.Timeout(settings.fhir_payer_read_timeout,
                                     connect=settings.fhir_payer_connect_timeout)
        self.http = httpx.AsyncClient(timeout=self.timeout, transport=transport,
                                      follow_redirects=False)
        self.breakers: dict[str, CircuitBreaker] = {}
        key = (load_client_key(settings.fhir_client_key_file)
               if settings.fhir_client_key_file else None)
        self.tokens = TokenSource(key)

    async def close(self) -> None:
        await self.http.aclose()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        key = endpoint.address
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(failures=self.settings.fhir_payer_breaker_failures,
                                                reset=self.settings.fhir_payer_breaker_reset)
        return self.breakers[key]

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
        breaker = self.breaker(endpoint)
        if not breaker.allow():
            raise Upstream(f"The payer at {endpoint.reference} is failing; calls are paused "
                           "(circuit open), try again later", code="transient")
        deadline = self.settings.fhir_payer_connect_timeout + self.settings.fhir_payer_read_timeout
        try:
            async with asyncio.timeout(deadline):
                result = await self._attempts(endpoint, path, resource, expect=expect,
                                              idempotent=idempotent)
        except TimeoutError:
            breaker.failed()
            raise UpstreamTimeout(f"The payer at {endpoint.reference} did not answer within "
                                  f"{deadline:g} s") from None
        except PayerRefused:
            breaker.succeeded()  # it answered: the endpoint is up
            raise
        except (Upstream, UpstreamTimeout):
            breaker.failed()
            raise
        breaker.succeeded()
        return result

    async def _attempts(self, endpoint: PayerEndpoint, path: str, resource: dict[str, Any], *,
                        expect: str, idempotent: bool) -> dict[str, Any]:
        url = f"{endpoint.address.rstrip('/')}/{path}"
        body = dumps(resource)
        last: Upstream | UpstreamTimeout | None = None
        for attempt in range(self.settings.fhir_payer_retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1))
            try:
                return await self._once(endpoint, url, body, expect=expect, idempotent=idempotent)
            except _Retry as retry:
                last = retry.error
                log.warning("payer call failed endpoint=%s attempt=%d status=%d",
                            endpoint.reference, attempt + 1, retry.error.status)
        assert last is not None
        raise last

    async def _once(self, endpoint: PayerEndpoint, url: str, body: bytes, *, expect: str,
                    idempotent: bool) -> dict[str, Any]:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if endpoint.oauth_client_id:
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.http, endpoint)}"
        try:
            response = await self.http.post(url, content=body, headers=headers)
            if response.status_code == 401 and endpoint.oauth_client_id:
                # The token expired or was revoked early: one new token, one more try.
                self.tokens.forget(endpoint)
                headers["Authorization"] = (
                    f"Bearer {await self.tokens.token(self.http, endpoint)}")
                response = await self.http.post(url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Nothing reached the payer: repeating cannot submit anything twice.
            raise _Retry(Upstream(f"Cannot connect to the payer at {endpoint.reference}",
                                  code="transient")) from None
        except httpx.InvalidURL:
            raise Upstream(f"The address of {endpoint.reference} is not a valid URL",
                           code="invalid") from None
        except httpx.TimeoutException:
            error = UpstreamTimeout(f"The payer at {endpoint.reference} did not answer in time")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        except httpx.HTTPError as exc:
            error = Upstream(f"The call to the payer at {endpoint.reference} failed "
                             f"({type(exc).__name__})")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        return self._answer(endpoint, response, expect=expect, idempotent=idempotent)

    def _answer(self, endpoint: PayerEndpoint, response: httpx.Response, *, expect: str,
                idempotent: bool) -> dict[str, Any]:
        status = response.status_code
        try:
            payload = (parse_json(response.content, what="payer's answer",
                                  max_depth=self.settings.fhir_max_json_depth)
                       if response.content else None)
        except Exception:
            payload = None
        if status >= 500 or status == 429:
            error = Upstream(f"The payer at {endpoint.reference} answered HTTP {status}")
            if idempotent:
                raise _Retry(error)
            raise error
        if status >= 400:
            raise PayerRefused(f"The payer at {endpoint.reference} refused the request "
                               f"(HTTP {status})", extra_issues=_payer_issues(payload))
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
