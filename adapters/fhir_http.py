"""Calls to another FHIR server (a payer, an EHR) with the adapters' resilience.

* connect and read timeouts, and one overall deadline per call (connect + read
  timeout): a peer that is down or slow fails the call within it, never a hang;
* retries with exponential backoff and full jitter, for idempotent calls, and for any
  call whose request never reached the peer (connection refused or not established);
* a circuit breaker per peer address: after N consecutive failures calls fail at once
  (502) until a trial call succeeds;
* OAuth2 client credentials with ``private_key_jwt`` (``payer_oauth.TokenSource``) when
  the endpoint names a client id; one new token and one more try on a 401.

``request`` returns the peer's answer when it is not a server error (< 500, not 429);
what a 4xx means is the caller's to judge. Nothing sent or received is logged.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from adapters.payer import PayerEndpoint
from adapters.payer_oauth import TokenSource, load_client_key
from adapters.resilience import CircuitBreaker, backoff_delay
from fhir_server.config import Settings
from fhir_server.errors import Upstream, UpstreamTimeout

log = logging.getLogger("adapters.fhir_http")
FHIR_JSON = "application/fhir+json"


class Refused(Upstream):
    """The peer answered, but refused (a 4xx, or not what was asked): it is up."""


class _Retry(Exception):
    def __init__(self, error: Upstream | UpstreamTimeout) -> None:
        super().__init__(error.diagnostics)
        self.error = error


class FhirHttp:
    def __init__(self, settings: Settings, *, peer: str, default_scope: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings, self.peer = settings, peer
        self.timeout = httpx.Timeout(settings.fhir_payer_read_timeout,
                                     connect=settings.fhir_payer_connect_timeout)
        self.http = httpx.AsyncClient(timeout=self.timeout, transport=transport,
                                      follow_redirects=False)
        self.breakers: dict[str, CircuitBreaker] = {}
        key = (load_client_key(settings.fhir_client_key_file)
               if settings.fhir_client_key_file else None)
        self.tokens = TokenSource(key, default_scope=default_scope)

    async def close(self) -> None:
        await self.http.aclose()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        key = endpoint.address
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(failures=self.settings.fhir_payer_breaker_failures,
                                                reset=self.settings.fhir_payer_breaker_reset)
        return self.breakers[key]

    async def request(self, endpoint: PayerEndpoint, method: str, url: str, *,
                      body: bytes | None = None, idempotent: bool,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        breaker = self.breaker(endpoint)
        if not breaker.allow():
            raise Upstream(f"The {self.peer} at {endpoint.reference} is failing; calls are "
                           "paused (circuit open), try again later", code="transient")
        deadline = self.settings.fhir_payer_connect_timeout + self.settings.fhir_payer_read_timeout
        try:
            async with asyncio.timeout(deadline):
                response = await self._attempts(endpoint, method, url, body, idempotent,
                                                headers or {})
        except TimeoutError:
            breaker.failed()
            raise UpstreamTimeout(f"The {self.peer} at {endpoint.reference} did not answer "
                                  f"within {deadline:g} s") from None
        except Refused:
            breaker.succeeded()
            raise
        except (Upstream, UpstreamTimeout):
            breaker.failed()
            raise
        breaker.succeeded()
        return response

    async def _attempts(self, endpoint: PayerEndpoint, method: str, url: str,
                        body: bytes | None, idempotent: bool,
                        extra: dict[str, str]) -> httpx.Response:
        last: Upstream | UpstreamTimeout | None = None
        for attempt in range(self.settings.fhir_payer_retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1))
            try:
                return await self._once(endpoint, method, url, body, idempotent, extra)
            except _Retry as retry:
                last = retry.error
                log.warning("%s call failed endpoint=%s attempt=%d status=%d", self.peer,
                            endpoint.reference, attempt + 1, retry.error.status)
        assert last is not None
        raise last

    async def _send(self, endpoint: PayerEndpoint, method: str, url: str,
                    body: bytes | None, extra: dict[str, str]) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, **extra}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        if endpoint.oauth_client_id:
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.http, endpoint)}"
        response = await self.http.request(method, url, content=body, headers=headers)
        if response.status_code == 401 and endpoint.oauth_client_id:
            # The token expired or was revoked early: one new token, one more try.
            self.tokens.forget(endpoint)
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.http, endpoint)}"
            response = await self.http.request(method, url, content=body, headers=headers)
        return response

    async def _once(self, endpoint: PayerEndpoint, method: str, url: str, body: bytes | None,
                    idempotent: bool, extra: dict[str, str]) -> httpx.Response:
        who = f"the {self.peer} at {endpoint.reference}"
        try:
            response = await self._send(endpoint, method, url, body, extra)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # Nothing reached the peer: repeating cannot do anything twice.
            raise _Retry(Upstream(f"Cannot connect to {who}", code="transient")) from None
        except httpx.InvalidURL:
            raise Upstream(f"The address of {endpoint.reference} is not a valid URL",
                           code="invalid") from None
        except httpx.TimeoutException:
            error = UpstreamTimeout(f"{who[0].upper()}{who[1:]} did not answer in time")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        except httpx.HTTPError as exc:
            error = Upstream(f"The call to {who} failed ({type(exc).__name__})")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        status = response.status_code
        if status >= 500 or status == 429:
            error = Upstream(f"{who[0].upper()}{who[1:]} answered HTTP {status}")
            if idempotent:
                raise _Retry(error)
            raise error
        return response
