"""Where calls to other systems may go: the guard against server-side request forgery.

An Endpoint's ``address`` (and what a peer names in turn: a token URL, a next link) is
data anyone allowed to write an Endpoint controls. Without a guard such a writer could
make this server send a Claim, with its patient contained, to the server's own loopback
services, to the clinic's private network or to a cloud metadata service.

Every connection of the peer client is made here, at the socket (``GuardedBackend``, the
network backend of the HTTP connection pool): the host is resolved once, each address it
resolves to is checked, and the socket connects to an address that passed, never to a
name that could be resolved again to something else (DNS rebinding). TLS then verifies
the certificate for the name in the URL (SNI too), as without the guard. As the check
is where the socket is opened, no URL escapes it: redirects (not followed anyway),
token URLs a peer publishes and links in its answers are all checked alike.

Refused unless allowed: loopback, private (RFC 1918, IPv6 ULA), link-local (with
169.254.169.254, the cloud metadata address), shared (100.64.0.0/10), multicast,
reserved, unspecified and every other address not globally routable, also when carried
inside an IPv6 address (IPv4-mapped, 6to4, Teredo, NAT64 64:ff9b::/96).

``FHIR_PEER_ALLOWED_HOSTS`` allows some anyway: comma-separated entries, each a host
name (exactly, any address it resolves to), an IP address or a CIDR network (the
resolved address must be in it), optionally followed by ``:port`` to allow that port
only (IPv6 in brackets then: ``[fd00::5]:8443``). Example:
``payer-sandbox.internal,10.20.0.0/16,127.0.0.1:9090``.

Any call to an address taken from data goes through ``guarded_client`` (the payer and EHR
adapters and the backend clients' JWKS URLs, with ``FHIR_PEER_ALLOWED_HOSTS``; rest-hook
Subscriptions, with ``FHIR_SUBSCRIPTION_ALLOWED_HOSTS``: the guard is told which setting it
reads), so that the rule is this one. It lives in core, below every room that calls out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class PeerAddressRefused(httpx.TransportError):
    """The peer's address is one this server does not call (nothing was sent)."""


@dataclass(frozen=True)
class Allowed:
    """One entry of an allow-list setting: a host name or a network, and a port or any."""

    name: str | None = None
    network: Network | None = None
    port: int | None = None

    def permits(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return self.name == _plain(host)
        assert self.network is not None
        return address in self.network


def _plain(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


PEER_SETTING = "FHIR_PEER_ALLOWED_HOSTS"


def parse_allowed(setting: str, *, name: str = PEER_SETTING) -> tuple[Allowed, ...]:
    """An allow-list setting (``name``) as entries (ValueError naming the entry it cannot
    read)."""
    out = []
    for raw in setting.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port = entry, None
        if _network(entry) is None:
            if entry.startswith("["):
                host, _, rest = entry[1:].partition("]")
                if rest and not rest.startswith(":"):
                    raise ValueError(f"{name}: cannot read {entry!r}")
                port = rest[1:] or None
            elif entry.count(":") == 1:
                host, port = entry.split(":")
        number = int(port) if port is not None and port.isdigit() else None
        if port is not None and (number is None or not 0 < number < 65536):
            raise ValueError(f"{name}: {entry!r} has no valid port")
        network = _network(host)
        if network is None and (entry.startswith("[") or not _is_name(host)):
            raise ValueError(f"{name}: {entry!r} is neither a host name "
                             "nor an IP address or network")
        out.append(Allowed(name=None if network else _plain(host), network=network,
                           port=number))
    return tuple(out)


def _is_name(host: str) -> bool:
    labels = _plain(host).split(".")
    return all(0 < len(label) < 64 and label.replace("-", "").replace("_", "").isalnum()
               and label.isascii() for label in labels)


def _judged(address: IPAddress) -> list[IPAddress]:
    """What to check of an address: an IPv6 one that stands for an IPv4 one (mapped, NAT64)
    is that IPv4 address; one that carries an IPv4 one (6to4, Teredo) is both."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    carried = address.sixtofour or (address.teredo[1] if address.teredo else None)
    return [address] if carried is None else [address, carried]


def why_refused(address: IPAddress) -> str | None:
    """What makes an address one not to call (None: a public address)."""
    for one in _judged(address):
        for kind, flag in (("unspecified", one.is_unspecified), ("loopback", one.is_loopback),
                           ("link-local", one.is_link_local), ("multicast", one.is_multicast),
                           ("private", one.is_private), ("reserved", one.is_reserved),
                           ("not globally routable", not one.is_global)):
            if flag:
                return kind
    return None


class PeerGuard:
    """Resolves a peer's host once and keeps the addresses this server may call."""

    def __init__(self, allowed: Iterable[Allowed], *, name: str = PEER_SETTING) -> None:
        self.allowed = tuple(allowed)
        self.name = name  # the setting that allows exceptions, named in refusals

    @classmethod
    def from_setting(cls, setting: str, *, name: str = PEER_SETTING) -> PeerGuard:
        return cls(parse_allowed(setting, name=name), name=name)

    def listed(self, host: str, port: int) -> bool:
        """Whether an entry names ``host`` (a name, or an IP address in a listed network)
        and allows ``port``: such a host may be called over plain http where a caller
        asks for https from everyone else (rest-hook Subscriptions)."""
        try:
            address: IPAddress | None = ipaddress.ip_address(_plain(host))
        except ValueError:
            address = None
        for entry in self.allowed:
            if entry.port is not None and entry.port != port:
                continue
            if entry.name is not None and entry.name == _plain(host):
                return True
            if entry.network is not None and address is not None and address in entry.network:
                return True
        return False

    def permits(self, host: str, address: IPAddress, port: int) -> bool:
        return why_refused(address) is None or any(a.permits(host, address, port)
                                                   for a in self.allowed)

    async def addresses(self, host: str, port: int, *, timeout: float | None) -> list[str]:
        """The addresses of ``host`` that may be called, in the resolver's order
        (``PeerAddressRefused`` when none; ``httpcore.ConnectError``/``ConnectTimeout``
        when the name does not resolve)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                found = await loop.getaddrinfo(_plain(host), port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({type(exc).__name__})"
                                        ) from None
        usable: list[str] = []
        refused: list[str] = []
        for *_, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if self.permits(host, address, port):
                if str(address) not in usable:
                    usable.append(str(address))
            else:
                refused.append(f"{address} ({why_refused(address)})")
        if not usable:
            raise PeerAddressRefused(f"{host}:{port} resolves to addresses this server does "
                                     f"not call: {', '.join(refused) or 'none'} (allow them "
                                     f"with {self.name})")
        return usable


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens a connection to an address the guard checked, not to the name."""

    def __init__(self, guard: PeerGuard) -> None:
        self.guard = guard
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self.guard.addresses(host, port, timeout=timeout):
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # the next address of the name, as a resolver's client would
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise PeerAddressRefused("peers are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def peer_ssl_context() -> ssl.SSLContext:
    """The TLS context of calls to peers: the system's CAs, and SSL_CERT_FILE /
    SSL_CERT_DIR when set. Loading the CAs takes tens of milliseconds, so one context is
    shared by every client of the process for as long as those two settings stay."""
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context(trust_env=True)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with every connection opened by ``GuardedBackend``. TLS is
    verified with the system's CAs (and SSL_CERT_FILE / SSL_CERT_DIR when set)."""

    def __init__(self, guard: PeerGuard) -> None:
        ssl_context = peer_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False, limits=LIMITS)
        # httpx 0.28 takes no network backend: its pool is replaced by the same pool
        # opening connections through the guard (pinned: httpx==0.28.1 in pyproject).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(guard),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry)


def guarded_client(guard: PeerGuard, *, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """An HTTP client for calls to peers: guarded connections, no redirects followed, no
    proxy from the environment (a proxy would connect where the guard cannot see)."""
    return httpx.AsyncClient(timeout=timeout, transport=GuardedTransport(guard),
                             follow_redirects=False, trust_env=False)
