"""Real TCP listeners on loopback that stand where an Endpoint points: they count what
reaches them and answer with fixed bytes (an HTTP answer, something that is not HTTP, or
nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Listener:
    answer: bytes = b""  # written to every connection, which is then closed
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)  # head and body of each request
    tls: ssl.SSLContext | None = None  # set: the listener speaks TLS
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    async def start(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            self.requests.append(head + body)
            writer.write(self.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


def http_answer(status: int, body: Any = None, **headers: str) -> bytes:
    """An HTTP/1.1 answer: ``status``, JSON ``body`` (if any), ``headers`` (Location=...)."""
    content = b"" if body is None else json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}", "Connection: close",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    if body is not None:
        lines.append("Content-Type: application/fhir+json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


NOT_HTTP = b"SSH-2.0-OpenSSH_9.6\r\n"  # a service that does not speak HTTP
