"""Calling payers over HTTP, resiliently: what every payer adapter (FHIR, X12) shares.

* connect and read timeouts, and one overall deadline per call (connect + read
  timeout): a payer that is down or slow answers 502/504 within it, never a hang;
* retries with exponential backoff and full jitter, for idempotent calls, and for
  any call whose request never reached the payer (connection refused or not
  established); a submission that may have reached the payer is not repeated;
* a circuit breaker per endpoint address: after N consecutive failures calls fail at
  once (502) until a trial call succeeds;
* OAuth2 client credentials (``payer_oauth.py``) for endpoints that carry the
  ``endpoint-oauth2`` extension, with one new token and one more try on a 401.

What is sent is never logged; a payer's error text is not passed on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import httpx

from adapters.payer import PayerEndpoint
from adapters.payer_oauth import TokenSource, load_client_key
from adapters.resilience import CircuitBreaker, backoff_delay
from fhir_server.config import Settings
from fhir_server.errors import Upstream, UpstreamTimeout

log = logging.getLogger("adapters.payer_http")
T = TypeVar("T")


class PayerRefused(Upstream):
    """The payer answered, but not with what was asked (a 4xx, or something unreadable)."""


class _Retry(Exception):
    def __init__(self, error: Upstream | UpstreamTimeout) -> None:
        super().__init__(error.diagnostics)
        self.error = error


class PayerHttp:
    """One HTTP client, the circuit breakers and the OAuth tokens of every payer endpoint."""

    def __init__(self, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        timeout = httpx.Timeout(settings.fhir_payer_read_timeout,
                                connect=settings.fhir_payer_connect_timeout)
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport,
                                        follow_redirects=False)
        self.breakers: dict[str, CircuitBreaker] = {}
        key = (load_client_key(settings.fhir_client_key_file)
               if settings.fhir_client_key_file else None)
        self.tokens = TokenSource(key)

    async def close(self) -> None:
        await self.client.aclose()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        key = endpoint.address
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(failures=self.settings.fhir_payer_breaker_failures,
                                                reset=self.settings.fhir_payer_breaker_reset)
        return self.breakers[key]

    async def call(self, endpoint: PayerEndpoint, method: str, url: str, *, body: bytes | None,
                   headers: dict[str, str], idempotent: bool,
                   read: Callable[[httpx.Response], T]) -> T:
        """One call with the rules above; ``read`` turns a non-5xx answer into the result
        (raising ``PayerRefused`` when it is not what was asked)."""
        breaker = self.breaker(endpoint)
        if not breaker.allow():
            raise Upstream(f"The payer at {endpoint.reference} is failing; calls are paused "
                           "(circuit open), try again later", code="transient")
        deadline = self.settings.fhir_payer_connect_timeout + self.settings.fhir_payer_read_timeout
        try:
            async with asyncio.timeout(deadline):
                result = await self._attempts(endpoint, method, url, body, headers,
                                              idempotent, read)
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

    async def _attempts(self, endpoint: PayerEndpoint, method: str, url: str,
                        body: bytes | None, headers: dict[str, str], idempotent: bool,
                        read: Callable[[httpx.Response], T]) -> T:
        last: Upstream | UpstreamTimeout | None = None
        for attempt in range(self.settings.fhir_payer_retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1))
            try:
                response = await self._once(endpoint, method, url, body, dict(headers),
                                            idempotent)
                return read(response)
            except _Retry as retry:
                last = retry.error
                log.warning("payer call failed endpoint=%s attempt=%d status=%d",
                            endpoint.reference, attempt + 1, retry.error.status)
        assert last is not None
        raise last

    async def _once(self, endpoint: PayerEndpoint, method: str, url: str, body: bytes | None,
                    headers: dict[str, str], idempotent: bool) -> httpx.Response:
        if endpoint.oauth_client_id:
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.client, endpoint)}"
        try:
            response = await self.client.request(method, url, content=body, headers=headers)
            if response.status_code == 401 and endpoint.oauth_client_id:
                # The token expired or was revoked early: one new token, one more try.
                self.tokens.forget(endpoint)
                headers["Authorization"] = (
                    f"Bearer {await self.tokens.token(self.client, endpoint)}")
                response = await self.client.request(method, url, content=body,
                                                     headers=headers)
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
        status = response.status_code
        if status >= 500 or status == 429:
            failed = Upstream(f"The payer at {endpoint.reference} answered HTTP {status}")
            if idempotent:
                raise _Retry(failed)
            raise failed
        return response
