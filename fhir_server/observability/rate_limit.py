"""``FHIR_RATE_LIMIT_PER_MINUTE``: a token bucket per client, 429 with Retry-After beyond it.

A client is its token's client id (checked after the token is verified, on the FHIR
routes), or its network address on the routes that take no token (the CapabilityStatement,
the authorization server). Each bucket holds ``FHIR_RATE_LIMIT_BURST`` requests (default:
a minute's worth) and refills continuously at the per-minute rate, so a burst is allowed
and then paced, and one client's burst never takes another's share. The buckets live in
each server process: with several workers or replicas a client gets the rate from each
(see docs/operating.md, "Rate limits"). ``/health``, ``/ready`` and ``/metrics`` have no limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from fhir_server.core.config import Settings
from fhir_server.core.errors import TooManyRequests
from fhir_server.observability import metrics

PRUNE_ABOVE = 10_000  # buckets kept before the full (idle) ones are forgotten


class TokenBuckets:
    def __init__(self, *, per_minute: int, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = float(burst or per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> float:
        """Take one request's token: 0 when allowed, else the seconds until one is there."""
        now = self.clock()
        tokens, when = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > PRUNE_ABOVE:
                self._prune(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [key for key, (tokens, when) in self._buckets.items()
                if tokens + (now - when) * self.rate >= self.capacity]
        for key in full:
            del self._buckets[key]


Dependency = Callable[[Request], Awaitable[None]]


def limiters(settings: Settings) -> tuple[Dependency, Dependency] | None:
    """(by address, by client) route dependencies; None when there is no limit."""
    if settings.fhir_rate_limit_per_minute is None:
        return None
    buckets = TokenBuckets(per_minute=settings.fhir_rate_limit_per_minute,
                           burst=settings.fhir_rate_limit_burst)

    def check(kind: str, who: str) -> None:
        wait = buckets.take(f"{kind}:{who}")
        if wait > 0:
            metrics.RATE_LIMITED.labels(kind).inc()
            raise TooManyRequests(
                f"Too many requests: this {kind} may make {settings.fhir_rate_limit_per_minute} "
                "per minute; retry after the time in Retry-After",
                headers={"Retry-After": str(max(1, math.ceil(wait)))})

    async def by_address(request: Request) -> None:
        check("address", request.client.host if request.client else "unknown")

    async def by_client(request: Request) -> None:
        principal = getattr(request.state, "principal", None)
        if principal is not None:
            check("client", principal.client_id)
        else:  # FHIR_AUTH=off: no client to tell apart
            await by_address(request)

    return by_address, by_client
