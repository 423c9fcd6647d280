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

    async def _read_request(self, reader: asyncio.StreamReader) -> None:
        """One request (head, and the body its Content-Length declares), kept in ``requests``."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        self.requests.append(head + body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._read_request(reader)
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


@dataclass
class Flood(Listener):
    """A listener whose answer does not end: the head (``answer``), then ``chunk`` again and
    again, as HTTP chunks (``chunked``) or as the body of a declared length, until
    ``cap`` bytes are sent or the client drops the connection (``cut_off``)."""

    chunk: bytes = b" " * 65536
    chunked: bool = True
    cap: int = 256 * 1024 * 1024
    sent: int = 0
    cut_off: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._read_request(reader)
            writer.write(self.answer)
            piece = (b"%x\r\n%s\r\n" % (len(self.chunk), self.chunk) if self.chunked
                     else self.chunk)
            while self.sent < self.cap:
                writer.write(piece)
                await writer.drain()
                self.sent += len(self.chunk)
        except (ConnectionError, OSError):
            self.cut_off = True  # the client closed the connection before the end
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self.ended.set()


def flood_head(content_type: str, *, length: int | None = None) -> bytes:
    """The head of an answer without end: chunked, or declaring ``length`` bytes."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n").encode()


def chunked_answer(content_type: str, body: bytes, *, piece: int = 4096) -> bytes:
    """A whole HTTP/1.1 answer whose body is sent in chunks (no Content-Length)."""
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
                      for i in range(0, len(body), piece))
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
