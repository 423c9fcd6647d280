"""The MLLP listener: HL7 v2 messages over TCP, one acknowledgement per message.

Off unless ``FHIR_HL7V2_PORT`` is set; it listens on ``FHIR_HL7V2_HOST`` (default
127.0.0.1) and starts and stops with the server (``start_listener``/``stop_listener``,
called from the lifespan). Framing is python-hl7's asyncio MLLP streams
(``hl7.mllp``): each block is read, applied (``process.py``) and answered on the same
connection, in order; connections are served concurrently. A block that is not MLLP
or not a message is answered AR and the connection keeps serving; a peer that breaks
the framing (no start block) is disconnected. Nothing of a message is logged but its
control id, type and acknowledgement code.

A message larger than ``FHIR_MAX_BODY_BYTES`` is read past without being held whole
(``frames.py``) and answered AR, with the message's control id when its MSH could be
read; the connection keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from hl7.mllp import InvalidBlockError, start_hl7_server

from fhir_server.adapters.hl7v2.ack import reject_header, reject_unparsed
from fhir_server.adapters.hl7v2.frames import BlockTooLarge, read_block, reader_limit
from fhir_server.adapters.hl7v2.message import V2Error
from fhir_server.adapters.hl7v2.process import PriceLookup, Processor
from fhir_server.adapters.records import records

log = logging.getLogger("fhir_server.adapters.hl7v2")


class Listener:
    def __init__(self, processor: Processor, host: str, port: int, *, max_message: int) -> None:
        self.processor, self.host, self.port = processor, host, port
        self.max_message = max_message  # bytes of one message (FHIR_MAX_BODY_BYTES)
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        # reuse_port: with FHIR_WORKERS > 1 every server process listens on the port and the
        # kernel spreads the connections; each message is applied under the same leases.
        self.server = await start_hl7_server(self._serve, self.host, self.port,
                                             limit=reader_limit(self.max_message),
                                             reuse_port=True)
        log.info("hl7v2 listener host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self.connections):
                task.cancel()
            for task in list(self.connections):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: Any, writer: Any) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        peer = (writer.get_extra_info("peername") or ("",))[0] or None
        try:
            while True:
                answer = await self._next(reader, peer)
                if answer is None:
                    break
                writer.writeblock(answer.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self.connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _next(self, reader: Any, peer: str | None) -> str | None:
        """The answer to the next block (None: the peer is gone or broke the framing)."""
        try:
            block = await read_block(reader)
        except asyncio.IncompleteReadError:
            return None
        except InvalidBlockError:
            log.info("hl7v2 connection closed: a block without the MLLP start byte")
            return None
        except BlockTooLarge as too_large:
            log.info("hl7v2 message refused: larger than %d bytes", self.max_message)
            return reject_header(too_large.head, V2Error(
                f"The message is larger than {self.max_message} bytes, the most this server "
                "takes (FHIR_MAX_BODY_BYTES)", where="MSH", code="100", reject=True))
        try:
            text = bytes(block).decode("utf-8")
        except UnicodeDecodeError:
            return reject_unparsed(V2Error("The message is not UTF-8 (or ASCII)", where="MSH",
                                           code="102", reject=True))
        try:
            return await self.processor.handle(text, peer)
        except Exception:  # one message's failure must not stop the listener
            # The formatters log the type and stack only, never the text (it can quote PHI).
            log.exception("hl7v2 message failed")
            return reject_unparsed(V2Error("internal error", where="MSH", code="207"))


async def start_listener(app: Any, *, price_definition: PriceLookup) -> None:
    """Start the MLLP listener when FHIR_HL7V2_PORT is set (the lifespan calls this)."""
    settings = app.state.settings
    if settings.fhir_hl7v2_port is None:
        app.state.hl7v2 = None
        return
    processor = Processor(repo=app.state.repo, settings=settings, audit=app.state.audit,
                          records=records(app.state.repo, "hl7v2"),
                          price_definition=price_definition)
    listener = Listener(processor, settings.fhir_hl7v2_host, settings.fhir_hl7v2_port,
                        max_message=settings.fhir_max_body_bytes)
    await listener.start()
    app.state.hl7v2 = listener


async def stop_listener(app: Any) -> None:
    listener = getattr(app.state, "hl7v2", None)
    if listener is not None:
        await listener.stop()
