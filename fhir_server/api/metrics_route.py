"""``GET /metrics``: the Prometheus text format, to the networks in ``FHIR_METRICS_ALLOW``
without a token, to anyone else only with a token holding a system scope or the admin
role (a Prometheus outside the cluster, with a backend client's token)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.enforce import authenticate
from fhir_server.auth.principal import Principal
from fhir_server.auth.roles import AUDIT_ROLE
from fhir_server.core.config import Settings
from fhir_server.core.errors import Forbidden
from fhir_server.observability import metrics

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(allow: str) -> tuple[Network, ...]:
    """``FHIR_METRICS_ALLOW`` parsed (a bad entry fails the start, not a scrape)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in allow.split(",") if part.strip())


def _in(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def may_scrape(principal: Principal) -> bool:
    return principal.role == AUDIT_ROLE or any(s.context == "system" for s in principal.scopes)


def metrics_route(settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    networks = allowed_networks(settings.fhir_metrics_allow)
    multiproc_dir = str(settings.prometheus_multiproc_dir or "") or None

    async def scrape(request: Request) -> Response:
        if not _in(request.client.host if request.client else None, networks):
            principal = await authenticate(request)  # 401 without a valid token
            if not may_scrape(principal):
                raise Forbidden("Metrics need a token with a system scope or the admin role")
        body, content_type = metrics.exposition(multiproc_dir)
        return Response(body, media_type=content_type)

    return scrape
