"""A RabbitMQ broker of the tests' own: Debian's rabbitmq-server on private ports.

Its node name (``fhirtest-<pid>@localhost``), AMQP and distribution ports, Erlang cookie
(in a private HOME), epmd (on a private port, started and stopped here), data, logs,
configuration and plugin list are all under one temporary folder, so that a test never
touches a broker of the machine and two runs of the suite (another CI) can run at once.
The configuration file names a user with a random password, so that tests can check that
no log ever shows it. ``stop``/``start`` stop and start the same node on the same data, as
an operator's restart does; durable exchanges, queues and persistent messages survive it.

``make test`` installs the package when missing (it needs root, as CI has).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage

from fhir_server.events.runner import CURSORS
from fhir_server.storage.repository import Repository
from tests.support.server_process import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's, without the su wrapper
EPMD = "epmd"
START_TIMEOUT = 120.0  # seconds; a first start takes about 5 s on an idle machine
STOP_TIMEOUT = 60.0
USER = "fhirtest"


def answers_amqp(port: int) -> bool:
    """The node accepts AMQP 0-9-1 on ``port``: it opens its listeners last, once booted,
    and answers the protocol header with a Connection.Start method frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


class Broker:
    def __init__(self, base: Path) -> None:
        if not SERVER.exists():
            raise RuntimeError(f"{SERVER} is missing: apt-get install rabbitmq-server "
                               "(make test installs it)")
        self.base = base
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.password = secrets.token_urlsafe(24)
        self.node = f"fhirtest-{os.getpid()}@localhost"
        self.log = base / "rabbitmq.out"  # its standard output (the node's log is in log/)
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._prepare()

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{self.password}@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def _prepare(self) -> None:
        home = self.base / "home"
        for folder in (home, self.base / "mnesia", self.base / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o600)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "rabbitmq.conf").write_text(
            f"default_user = {USER}\ndefault_pass = {self.password}\n"
            "disk_free_limit.absolute = 10MB\n")

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("RABBITMQ_", "ERL_")) and k != "HOME"}
        return {**keep, "HOME": str(self.base / "home"), "ERL_EPMD_PORT": str(self.epmd_port),
                "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
                "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid")}

    def start(self) -> None:
        """Start the node (and the private epmd, the first time); return once it answers
        AMQP."""
        if self.running:
            return
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port)],
                                          env=self.env(), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        with self.log.open("ab") as out:
            self._server = subprocess.Popen([str(SERVER)], env=self.env(), cwd=self.base,
                                            stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_amqp(self.port):
            if self._server.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self._server.returncode}"
                                   f"\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"rabbitmq-server did not answer within {START_TIMEOUT:g} s"
                                   f"\n{self._tail()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the node: SIGTERM, a clean stop (rabbitmq-server stops the node and waits
        for it), or SIGKILL to all of its processes (a crash); past ``STOP_TIMEOUT`` killed."""
        server, self._server = self._server, None
        if server is None:
            return
        if sig == signal.SIGTERM:
            server.terminate()  # the script's trap stops the node and waits for it
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=STOP_TIMEOUT)
        # a crash, or a stop that overran: every process of the node (the Erlang VM and its
        # port programs are in the script's process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=STOP_TIMEOUT)
        while answers_amqp(self.port):  # the VM may outlive the script by a moment
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the node and the private epmd."""
        self.stop()
        epmd, self._epmd = self._epmd, None
        if epmd is not None and epmd.poll() is None:
            epmd.terminate()
            try:
                epmd.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                epmd.kill()
                epmd.wait()

    def _tail(self, lines: int = 30) -> str:
        logs = [self.log, *sorted((self.base / "log").glob("*.log"))]
        text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Received:
    """A message as a test's queue received it."""

    message_id: str
    routing_key: str
    cc: tuple[str, ...]
    body: dict[str, Any]
    content_type: str | None
    persistent: bool
    type_: str | None
    traceparent: str | None = None  # the publish span's, with tracing on

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> Received:
        headers = message.headers or {}
        cc = headers.get("CC") or []
        traceparent = headers.get("traceparent")
        return cls(message_id=str(message.message_id), routing_key=str(message.routing_key),
                   cc=tuple(str(key) for key in cc),  # type: ignore[union-attr]
                   body=orjson.loads(message.body), content_type=message.content_type,
                   persistent=message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT,
                   type_=message.type,
                   traceparent=None if traceparent is None else str(traceparent))


async def bind_queue(url: str, exchange: str, *keys: str) -> str:
    """A new durable queue bound to the (durable topic) ``exchange`` by ``keys``; its name."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        bound_to = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(name, durable=True)
        for key in keys:
            await queue.bind(bound_to, key)
    return name


async def receive(url: str, queue: str, *, ids: Collection[str], timeout: float = 90.0,
                  settle: float = 0.5) -> list[Received]:
    """Consume ``queue`` until a message of every id in ``ids`` has come, then whatever else
    comes within ``settle`` seconds; in the order received (AssertionError past
    ``timeout``)."""
    got: list[Received] = []
    missing = set(ids)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        source = await channel.declare_queue(queue, passive=True)
        async with source.iterator() as messages:
            try:
                async with asyncio.timeout(timeout):
                    while missing:
                        message = await anext(messages)
                        await message.ack()
                        got.append(Received.of(message))
                        missing.discard(got[-1].message_id)
            except TimeoutError:
                raise AssertionError(f"messages {sorted(missing)} did not come within "
                                     f"{timeout:g} s; came: {[r.message_id for r in got]}"
                                     ) from None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settle):
                    async for message in messages:
                        await message.ack()
                        got.append(Received.of(message))
    return got


def first_of_each(received: list[Received]) -> list[Received]:
    """Each message id once, at its first arrival (at least once: a repeat must be the same
    message)."""
    first: dict[str, Received] = {}
    for message in received:
        assert first.setdefault(message.message_id, message) == message
    return list(first.values())


async def bridge_cursor(repo: Repository, timeout: float = 60.0) -> int:
    """The bridge's cursor, once it is placed (at its first run it starts at the next event
    committed: a test writes after this)."""
    deadline = time.monotonic() + timeout
    while (cursor := await repo.records.get(kind=CURSORS, id_="amqp")) is None:
        assert time.monotonic() < deadline, "the bridge did not start"
        await asyncio.sleep(0.02)
    return int(cursor["after"])
