"""Calling another system over HTTP, resiliently: what the payer (FHIR, X12) and EHR
adapters share.

* connect and read timeouts, and one overall deadline per call (connect + read
  timeout): a peer that is down or slow fails the call within it, never a hang;
* retries with exponential backoff and full jitter, for idempotent calls, and for any
  call whose request never reached the peer (connection refused or not established);
  a submission that may have reached the peer is not repeated;
* a circuit breaker per peer address: after N consecutive failures calls fail at once
  (502) until a trial call succeeds; a peer that answers, even with a refusal, is up;
* OAuth2 client credentials with ``private_key_jwt`` (``payer_oauth.TokenSource``) when
  the endpoint names a client id; one new token and one more try on a 401;
* connections only to addresses the guard allows (``core/peer_guard.py``: no loopback,
  private, link-local or metadata address unless ``FHIR_PEER_ALLOWED_HOSTS`` allows it),
  and no redirect followed;
* answers read as they arrive, under a bound the caller names (``max_bytes``:
  ``peer_limits.py``), never whole first: past it the connection is dropped and the call
  fails (not retried);
* one message for the caller whatever failed (``peer_errors.py``); which failure it was
  goes to the log.

Every call is counted (``fhir_adapter_calls``, by peer kind, ``Endpoint/<id>`` and
outcome) and timed, and, with tracing on, is a client span whose W3C ``traceparent``
goes to the peer.

Nothing sent or received is logged; a peer's error text is not passed on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.payer_oauth import DEFAULT_SCOPE, TokenSource, load_client_key
from fhir_server.adapters.peer_errors import Refused, unreachable
from fhir_server.adapters.peer_limits import AnswerTooLarge, send_bounded
from fhir_server.adapters.resilience import CircuitBreaker, backoff_delay
from fhir_server.core.config import Settings
from fhir_server.core.errors import Upstream, UpstreamTimeout
from fhir_server.core.peer_guard import PeerAddressRefused, PeerGuard, guarded_client
from fhir_server.observability import metrics, tracing

FHIR_JSON = "application/fhir+json"
T = TypeVar("T")


class _Retry(Exception):
    def __init__(self, error: Upstream | UpstreamTimeout) -> None:
        super().__init__(error.diagnostics)
        self.error = error


class PeerHttp:
    """One HTTP client, the circuit breakers and the OAuth tokens of a kind of peer."""

    def __init__(self, settings: Settings, *, peer: str = "payer",
                 default_scope: str = DEFAULT_SCOPE) -> None:
        self.settings, self.peer = settings, peer
        timeout = httpx.Timeout(settings.fhir_payer_read_timeout,
                                connect=settings.fhir_payer_connect_timeout)
        self.client = guarded_client(PeerGuard.from_setting(settings.fhir_peer_allowed_hosts),
                                     timeout=timeout)
        self.breakers: dict[str, CircuitBreaker] = {}
        key = (load_client_key(settings.fhir_client_key_file)
               if settings.fhir_client_key_file else None)
        self.tokens = TokenSource(key, default_scope=default_scope, peer=peer)

    async def close(self) -> None:
        await self.client.aclose()

    def breaker(self, endpoint: PayerEndpoint) -> CircuitBreaker:
        key = endpoint.address
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(failures=self.settings.fhir_payer_breaker_failures,
                                                reset=self.settings.fhir_payer_breaker_reset)
        return self.breakers[key]

    async def request(self, endpoint: PayerEndpoint, method: str, url: str, *,
                      body: bytes | None = None, idempotent: bool,
                      headers: dict[str, str] | None = None,
                      max_bytes: int | None = None) -> httpx.Response:
        """A FHIR call: the answer when it is not a server error (what a 4xx means is the
        caller's to judge), its content read whole under ``max_bytes`` (by default
        FHIR_MAX_BUNDLE_BYTES)."""
        sent = {"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if body is not None else {}),
                **(headers or {})}
        return await self.call(endpoint, method, url, body=body, headers=sent,
                               idempotent=idempotent, read=lambda response: response,
                               max_bytes=max_bytes)

    async def call(self, endpoint: PayerEndpoint, method: str, url: str, *, body: bytes | None,
                   headers: dict[str, str], idempotent: bool,
                   read: Callable[[httpx.Response], T], max_bytes: int | None = None) -> T:
        """One call with the rules above; ``read`` turns an answer that is not a server error
        into the result (raising ``Refused`` when it is not what was asked). The answer's
        content is read under ``max_bytes`` (FHIR_MAX_BUNDLE_BYTES when not given): past it
        the call fails as the peer's failure."""
        limit = self.settings.fhir_max_bundle_bytes if max_bytes is None else max_bytes
        breaker = self.breaker(endpoint)
        if not breaker.allow():
            self._record(endpoint, "circuit_open", None, breaker)
            raise unreachable(self.peer, endpoint.reference, "circuit open, call not made")
        deadline = self.settings.fhir_payer_connect_timeout + self.settings.fhir_payer_read_timeout
        start = time.perf_counter()
        with tracing.client_span(f"{self.peer} {method}", peer=self.peer,
                                 endpoint=endpoint.reference, method=method) as span:
            headers = tracing.with_traceparent(headers)
            try:
                async with asyncio.timeout(deadline):
                    result = await self._attempts(endpoint, method, url, body, headers,
                                                  idempotent, read, limit)
            except TimeoutError:
                breaker.failed()
                self._record(endpoint, "timeout", start, breaker, span)
                # Told apart from the other failures: the wait has told the caller already.
                raise UpstreamTimeout(f"The {self.peer} at {endpoint.reference} did not answer "
                                      f"within {deadline:g} s") from None
            except Refused:
                breaker.succeeded()  # it answered: the endpoint is up
                self._record(endpoint, "refused", start, breaker, span)
                raise
            except UpstreamTimeout:
                breaker.failed()
                self._record(endpoint, "timeout", start, breaker, span)
                raise
            except Upstream:
                breaker.failed()
                self._record(endpoint, "failed", start, breaker, span)
                raise
            breaker.succeeded()
            self._record(endpoint, "ok", start, breaker, span)
            return result

    def _record(self, endpoint: PayerEndpoint, outcome: str, start: float | None,
                breaker: CircuitBreaker, span: Any = None) -> None:
        """The call's metrics and span outcome: by peer kind and Endpoint id, never content."""
        metrics.adapter_call(peer=self.peer.lower(), endpoint=endpoint.reference,
                             outcome=outcome,
                             seconds=None if start is None else time.perf_counter() - start,
                             circuit_open=breaker.state != "closed")
        tracing.set_outcome(span, outcome, error=outcome not in ("ok", "refused"))

    async def _attempts(self, endpoint: PayerEndpoint, method: str, url: str,
                        body: bytes | None, headers: dict[str, str], idempotent: bool,
                        read: Callable[[httpx.Response], T], limit: int) -> T:
        last: Upstream | UpstreamTimeout | None = None
        for attempt in range(self.settings.fhir_payer_retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt - 1))
            try:
                response = await self._once(endpoint, method, url, body, dict(headers),
                                            idempotent, limit)
                return read(response)
            except _Retry as retry:
                last = retry.error
        assert last is not None
        raise last

    async def _send(self, endpoint: PayerEndpoint, method: str, url: str, body: bytes | None,
                    headers: dict[str, str], limit: int) -> httpx.Response:
        async def send() -> httpx.Response:
            request = self.client.build_request(method, url, content=body, headers=headers)
            return await send_bounded(self.client, request, max_bytes=limit)

        if endpoint.oauth_client_id:
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.client, endpoint)}"
        response = await send()
        if response.status_code == 401 and endpoint.oauth_client_id:
            # The token expired or was revoked early: one new token, one more try.
            self.tokens.forget(endpoint)
            headers["Authorization"] = f"Bearer {await self.tokens.token(self.client, endpoint)}"
            response = await send()
        return response

    async def _once(self, endpoint: PayerEndpoint, method: str, url: str, body: bytes | None,
                    headers: dict[str, str], idempotent: bool, limit: int) -> httpx.Response:
        def failed(detail: str) -> Upstream:
            return unreachable(self.peer, endpoint.reference, detail)

        try:
            response = await self._send(endpoint, method, url, body, headers, limit)
        except AnswerTooLarge as large:
            # The peer would send the same again: not retried.
            raise failed(str(large)) from None
        except PeerAddressRefused as refused:
            # Nothing was sent, and asking again would be refused again.
            raise failed(f"address refused by the peer guard: {refused}") from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the peer: repeating cannot do anything twice.
            raise _Retry(failed(f"cannot connect ({type(exc).__name__})")) from None
        except httpx.InvalidURL:
            raise Upstream(f"The address of {endpoint.reference} is not a valid URL",
                           code="invalid") from None
        except httpx.TimeoutException:
            error = UpstreamTimeout(f"The {self.peer} at {endpoint.reference} did not answer "
                                    "in time")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        except httpx.HTTPError as exc:
            error = failed(f"call failed ({type(exc).__name__})")
            if idempotent:
                raise _Retry(error) from None
            raise error from None
        status = response.status_code
        if status >= 500 or status == 429:
            error = failed(f"answered HTTP {status}")
            if idempotent:
                raise _Retry(error)
            raise error
        return response
