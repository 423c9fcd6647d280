"""The RabbitMQ bridge: change events relayed per second, and none lost across faults.

Starts a RabbitMQ node of its own (``tests/support/rabbitmq.py``: private ports and data)
and ``python -m fhir_server serve`` (auth off, FHIR_WORKERS=2, the embedded SQLite, or the
database of ``MONGODB_URI``) with ``FHIR_AMQP_URL`` set, and consumes a durable queue bound
to the exchange by ``#`` (a robust aio-pika consumer, which reconnects after a restart).

1. **Relay**: with the broker stopped, ``--events`` Basic resources are created over HTTP
   (8 clients); the broker starts and the backlog is relayed. Events per second from the
   first message to the last (the writes and the bridge's backoff are not counted; the
   target is 1,000/s or more).
2. **Faults**: a fifth as many creates from 8 clients while the broker is stopped and
   started again (a third of the way), and the server is SIGKILLed and started again
   (two thirds of the way); clients retry once the server is back.

Then every event of the outbox (read from the database) must have arrived: lost = 0;
repeats (at least once) are counted, and each must carry the same message id. Commit to
arrival latency (the body's instant, in milliseconds, to the arrival) is reported for the
faults phase, outages included.

Usage: python bench/events_bench.py [--events 10000]
Do not run it beside other benchmarks: both compete for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import SERVER_TIMEOUT, free_port, percentile  # noqa: E402

from fhir_server.core.config import Settings  # noqa: E402
from fhir_server.storage.open import open_repository  # noqa: E402
from tests.support.rabbitmq import Broker, bind_queue, bridge_cursor  # noqa: E402

CLIENTS = 8


class Server:
    """The server process, which this benchmark kills and starts again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{env['FHIR_PORT']}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"],
                                         env=self.env, cwd=ROOT, stdout=out, stderr=out,
                                         start_new_session=True)
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (log: {self.log})")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


class Received:
    """What the queue's consumer got: message ids with their arrival and commit instants
    (a repeat is a second entry)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, float, float]] = []  # (number, arrived, committed)

    @property
    def numbers(self) -> set[int]:
        return {number for number, _, _ in self.messages}

    async def consume(self, url: str, queue: str, stop: asyncio.Event,
                      ready: asyncio.Event) -> None:
        connection = await aio_pika.connect_robust(url, reconnect_interval=0.5)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1000)
            source = await channel.declare_queue(queue, passive=True)

            async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                arrived = time.time()
                # the body's instant has milliseconds (the AMQP timestamp only seconds)
                at = datetime.fromisoformat(orjson.loads(message.body)["at"]).timestamp()
                self.messages.append((int(str(message.message_id)), arrived, at))
                await message.ack()

            await source.consume(take)
            ready.set()
            await stop.wait()


async def create(server: Server, count: int, label: str, done: list[int] | None = None
                 ) -> None:
    """``count`` Basic creates from CLIENTS clients; a client whose server is away waits for
    it and sends again (a create it sent may then commit twice: both are events)."""
    todo = iter(range(count))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=f"{server.base}/fhir/",
                                     timeout=SERVER_TIMEOUT) as http:
            for n in todo:
                body = {"resourceType": "Basic", "code": {"text": f"{label} {n}"}}
                while True:
                    try:
                        answer = await http.post("Basic", json=body)
                        if answer.status_code == 201:
                            if done is not None:
                                done[0] += 1
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def until_all(received: Received, numbers: set[int], consumer: asyncio.Task[None],
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not numbers <= received.numbers:
        if consumer.done():
            consumer.result()  # its failure
            raise RuntimeError("the consumer stopped")
        if time.monotonic() > deadline:
            missing = sorted(numbers - received.numbers)
            raise RuntimeError(f"{len(missing)} events did not arrive: {missing[:10]}...")
        await asyncio.sleep(0.05)


async def faults(server: Server, broker: Broker, count: int) -> None:
    """Creates while the broker restarts (from a third of them), then while the server is
    killed and restarted (from two thirds)."""
    done = [0]
    writes = asyncio.create_task(create(server, count, "faults", done))
    for share, fault in ((1, "broker"), (2, "server")):
        while done[0] < count * share // 3 and not writes.done():
            await asyncio.sleep(0.01)
        if fault == "broker":
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)
        else:
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)
    await writes


async def measure(args: argparse.Namespace, *, server: Server, broker: Broker, queue: str,
                  settings: Settings) -> dict[str, Any]:
    received = Received()
    stop, ready = asyncio.Event(), asyncio.Event()
    consumer = asyncio.create_task(received.consume(broker.url, queue, stop, ready))
    repo = await open_repository(settings)
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
        mark = await bridge_cursor(repo)

        await asyncio.to_thread(broker.stop)
        started = time.monotonic()
        await create(server, args.events, "relay")
        wrote = time.monotonic() - started
        backlog = {e.number for e in await repo.events(after=mark, limit=10 * args.events)}
        await asyncio.to_thread(broker.start)
        await until_all(received, backlog, consumer, timeout=600)
        arrivals = sorted(t for n, t, _ in received.messages if n in backlog)
        relay = len(backlog) / max(arrivals[-1] - arrivals[0], 1e-6)

        before = len(received.messages)
        await faults(server, broker, max(100, args.events // 5))
        later = {e.number for e in await repo.events(after=max(backlog),
                                                     limit=10 * args.events)}
        await until_all(received, later, consumer, timeout=600)
        await asyncio.sleep(1.0)  # repeats still on their way
        return {"wrote": wrote, "relay": relay, "everything": backlog | later,
                "received": received, "faults_from": before}
    finally:
        await repo.close()
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer, timeout=30)


async def run(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="events-bench-"))
    broker = Broker(base / "rabbitmq")
    exchange = f"fhir.bench.{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FHIR_", "MONGODB_"))}
    env |= {"FHIR_DATA_DIR": str(base / "data"), "FHIR_PORT": str(free_port()),
            "FHIR_HOST": "127.0.0.1", "FHIR_AUTH": "off", "FHIR_WORKERS": "2",
            "FHIR_LOG_LEVEL": "WARNING", "FHIR_TERMINOLOGY_LOAD": "false",
            "FHIR_AMQP_URL": broker.url, "FHIR_AMQP_EXCHANGE": exchange,
            "FHIR_EVENTS_LEASE_SECONDS": "2"}
    if os.environ.get("MONGODB_URI"):
        env |= {"MONGODB_URI": os.environ["MONGODB_URI"],
                "MONGODB_DATABASE": f"events_bench_{uuid.uuid4().hex[:8]}"}
    settings = Settings(fhir_data_dir=base / "data", mongodb_uri=env.get("MONGODB_URI"),
                        mongodb_database=env.get("MONGODB_DATABASE", "fhir"))
    server = Server(env, base / "server.log")
    broker.start()
    try:
        queue = await bind_queue(broker.url, exchange, "#")
        server.start()
        try:
            results = await measure(args, server=server, broker=broker, queue=queue,
                                    settings=settings)
        finally:
            server.stop()
    finally:
        broker.close()
    report(args, **results)


def report(args: argparse.Namespace, *, wrote: float, relay: float, everything: set[int],
           received: Received, faults_from: int) -> None:
    numbers = [n for n, _, _ in received.messages]
    lost = everything - set(numbers)
    repeats = len(numbers) - len(set(numbers))
    latency = [arrived - at for n, arrived, at in received.messages[faults_from:]
               if at and n in everything]
    print(f"RabbitMQ bridge, {platform.node()} ({os.cpu_count()} cores), "
          f"{'MongoDB' if os.environ.get('MONGODB_URI') else 'embedded SQLite'}")
    print(f"relay: {args.events} events written in {wrote:.1f} s while the broker was "
          f"stopped, then relayed at {relay:,.0f} events/s (target >= 1,000/s)")
    print(f"faults (broker restart, server SIGKILL): {len(everything)} events in all, "
          f"lost {len(lost)}, repeated {repeats} (same message id)")
    if latency:
        print(f"commit to arrival in the faults phase (the outages included): "
              f"p50 {percentile(latency, 0.5):.3f} s, p95 {percentile(latency, 0.95):.3f} s, "
              f"max {max(latency):.1f} s")
    if lost:
        raise SystemExit(f"lost events: {sorted(lost)[:20]}")


def main() -> None:
    # the consumer's reconnection attempts while the broker is away are expected
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=10_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
