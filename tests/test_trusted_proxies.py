"""X-Forwarded-For is believed only from FHIR_TRUSTED_PROXIES (none by default): the client
address it gives goes into the sign-in lockout, the rate limits and the AuditEvents."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server_process import server_process
from tests.support.store import HTTP_TIMEOUT, Store

LIMIT = 2  # requests per minute per address (FHIR_RATE_LIMIT_PER_MINUTE), burst as much


def statuses(base: str) -> list[int]:
    """/metadata (no token: limited by address) from three claimed addresses in turn."""
    return [httpx.get(f"{base}/metadata", timeout=HTTP_TIMEOUT,
                      headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(LIMIT + 1)]


@pytest.mark.slow
@pytest.mark.process
def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(store: Store) -> None:
    with server_process(store, FHIR_RATE_LIMIT_PER_MINUTE=str(LIMIT),
                        FHIR_RATE_LIMIT_BURST=str(LIMIT)) as server:
        # One peer (loopback) whatever it claims: one bucket, the third is refused.
        assert statuses(server.base) == [200] * LIMIT + [429]


@pytest.mark.slow
@pytest.mark.process
def test_a_trusted_proxy_gives_the_client_address(store: Store) -> None:
    with server_process(store, FHIR_RATE_LIMIT_PER_MINUTE=str(LIMIT),
                        FHIR_RATE_LIMIT_BURST=str(LIMIT),
                        FHIR_TRUSTED_PROXIES="127.0.0.1") as server:
        assert statuses(server.base) == [200] * (LIMIT + 1)  # three clients, a bucket each
