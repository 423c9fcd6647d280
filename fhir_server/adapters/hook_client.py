"""The HTTP client of rest-hook notifications: aiohttp, behind the peer guard.

Why not the payers' httpx client (``peer_http.py``): a notification is one small request,
and a busy clinic sends thousands a second (ten Subscriptions on every write). On this
project's build machine httpx spent about 2 ms of CPU per request and aiohttp about
0.2 ms (3,000 PUTs of a 1 KB body to a loopback receiver, one connection kept alive), so
with httpx the notifications alone would take a core at 500 a second.

The guard is the same rule as the payers' (``core/peer_guard.py``), applied where the address
is chosen: aiohttp hands a host name to ``GuardedResolver``, which resolves it once and
returns only the addresses the guard permits, and connects to one of those, never to the
name again (no DNS rebinding); an IP address in the URL, which aiohttp never hands to a
resolver, is checked before the request. No redirect is followed, no proxy or ``.netrc``
from the environment is used, no cookie is kept (a receiver's cookie would otherwise go
to the next receiver), and no answer body is read beyond ``ANSWER_READ`` bytes (the rest
closes the connection instead of being drained).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from fhir_server.core.peer_guard import PeerAddressRefused, PeerGuard, peer_ssl_context

ANSWER_READ = 65_536
KEEPALIVE_SECONDS = 5.0
MAX_CONNECTIONS = 100


class GuardedResolver(AbstractResolver):
    """Resolves a host name to the addresses the guard permits (``PeerAddressRefused``
    when none; ``OSError`` when it does not resolve, which aiohttp reports as a connection
    error)."""

    def __init__(self, guard: PeerGuard, *, timeout: float) -> None:
        self.guard, self.timeout = guard, timeout

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self.guard.addresses(host, port, timeout=self.timeout)
        except PeerAddressRefused:
            raise
        except Exception as error:  # httpcore's ConnectError/ConnectTimeout: no address
            raise OSError(str(error)) from None
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for address in addresses]

    async def close(self) -> None:
        """Nothing to release: the guard resolves through the event loop."""


class HookClient:
    """Guarded HTTP/1.1 requests with kept-alive connections; ``request`` answers the
    status code. Made inside the event loop that uses it."""

    def __init__(self, guard: PeerGuard, *, timeout: float) -> None:
        self.guard = guard
        self._literals: dict[tuple[str, int], PeerAddressRefused | None] = {}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=GuardedResolver(guard, timeout=timeout), ssl=peer_ssl_context(),
                limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS),
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=timeout))

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, url: str, *, headers: Mapping[str, str],
                      body: bytes, timeout: float) -> int:
        """Send; the answer's status (``PeerAddressRefused``, ``aiohttp.ClientError`` or
        ``TimeoutError`` when there is none)."""
        target = URL(url)
        await self._check_literal(target)
        async with self._session.request(
                method, target, data=body, headers=headers, allow_redirects=False,
                skip_auto_headers=("Content-Type",),
                timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
            read = 0
            while read <= ANSWER_READ:
                chunk = await answer.content.read(ANSWER_READ)
                if not chunk:
                    break
                read += len(chunk)
            return answer.status

    async def _check_literal(self, target: URL) -> None:
        """Refuse an IP address in the URL that the guard does not permit (its verdict
        is kept: it depends on the address and the settings only)."""
        host, port = target.raw_host or "", target.port or 0
        key = (host, port)
        if key not in self._literals:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                self._literals[key] = None  # a name: the resolver checks it
            else:
                try:
                    await self.guard.addresses(host, port, timeout=None)
                    self._literals[key] = None
                except PeerAddressRefused as error:
                    self._literals[key] = error
        verdict = self._literals[key]
        if verdict is not None:
            raise PeerAddressRefused(str(verdict))
