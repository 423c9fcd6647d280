"""The listening sockets of ``FHIR_WORKERS`` processes: one per worker, all on one port.

With one socket shared by every worker, the process that wakes first accepts every
connection waiting on it. A client that keeps its connections alive (a proxy, a load
balancer, an EHR's connection pool) opens them together, so all of them went to one worker
while the others idled: measured with 8 keep-alive clients creating resources, one worker
used 0.95 of a core and the other 0.03. Each worker now has its own socket, bound with
``SO_REUSEPORT``, and the kernel spreads new connections over the sockets by their
addresses. The supervisor keeps every socket open: connections that reach the socket of a
worker that died wait in its queue for the worker that replaces it.

The port is first bound alone, without ``SO_REUSEPORT``, so that a port already in use
(another server started by mistake) is refused, as a shared socket was, not shared with
it. Where the system has no ``SO_REUSEPORT`` every worker gets the one shared socket.
"""

from __future__ import annotations

import socket


def worker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host``:``port`` (``port`` 0: one free port for all),
    inheritable by the worker processes; OSError when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    alone = _bound(family, host, port, reuse_port=False)
    if not hasattr(socket, "SO_REUSEPORT"):
        return [alone] * count
    port = alone.getsockname()[1]
    alone.close()
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(_bound(family, host, port, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bound(family: socket.AddressFamily, host: str, port: int, *,
           reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
