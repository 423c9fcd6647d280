"""Bill on finish (issue 28): what billing after the visit costs an A03, and how soon the
bill follows.

Starts two ``python -m fhir_server serve`` processes (auth off, the embedded SQLite, or the
database of ``MONGODB_URI``; ``FHIR_WORKERS`` at its default), each with its MLLP listener
on and ``FHIR_BILLING_PROVIDER`` set: one with the billing worker off
(``FHIR_BILL_ON_FINISH=false``), one with it on. On each, the same data: the price list
(a ChargeItemDefinition per code), then ``--visits`` visits, each admitted by an A04 with
IN1 (the patient, the visit and its Coverage) and charged by a DFT^P03 (two FT1: a
consultation and one to three blood tests), over a real MLLP client connection.

Then each visit is discharged by an A03, paced at ``--rate`` a second, one connection per
server, in ``--blocks`` blocks taken in turn (off, on, off, on...) so that the other work
on the machine weighs on both alike; after an "on" block the bench waits for its bills, so
that billing never overlaps the next "off" block. While the discharges go, one search a
``--poll`` interval (``Invoice?status=issued&_lastUpdated=ge[block start]``, on both
servers alike) looks for the new bills. Measured:

1. the A03's round trip (sent to ACK received), p50/p95/p99, worker off and on; the added
   p95 (target: under 50 ms);
2. from the ACK to the visit's issued Invoice being found over REST (its identifier
   ``urn:fhir-rcm-server:bill|Encounter/[id]``), p50/p95 (target: under 1 s); the poll's
   interval is part of it. Also from the ACK to the Invoice's commit (its
   ``meta.lastUpdated``, same clock).

Then every visit of the "on" server must have exactly one issued Invoice whose total is
computed here from its FT1 segments and the price list, and one Claim (the patient has
Coverage); the "off" server must have no Invoice and every Encounter finished.

Usage: python bench/bill_on_finish_bench.py [--visits 200] [--rate 10] [--blocks 4]
Do not run it beside other benchmarks: both compete for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import SERVER_TIMEOUT, free_port, percentile  # noqa: E402

from fhir_server.terminology.systems import BILL_KEY  # noqa: E402
from tests.adapters.hl7v2.helpers import adt, in1, mllp  # noqa: E402
from tests.adapters.hl7v2.test_siu_dft import dft, ft1  # noqa: E402
from tests.factories import PRICES, charge_item_definition  # noqa: E402
from tests.workflow.helpers import post  # noqa: E402

MRN_SYSTEM = "urn:hl7v2:authority:GENHOSP"  # the listener's identifier system for GENHOSP
PROVIDER = "Organization/clinic"
ADMITTED, DISCHARGED = "202601050900", "202601051200"
ADDED_P95_TARGET = 0.050  # seconds
BILL_P95_TARGET = 1.0


@dataclass
class Visit:
    """One visit: its HL7 keys, what its bill must come to, and what was measured."""

    n: int
    mrn: str
    number: str  # PV1-19 without its leading V
    charges: list[str]
    encounter_id: str = ""
    round_trip: float = 0.0
    acked: float = 0.0  # wall clock at the ACK
    seen: float = 0.0  # wall clock when a search first found its issued Invoice
    committed: float = 0.0  # the Invoice's meta.lastUpdated

    @property
    def expected(self) -> Decimal:
        """The bill's total from the FT1 codes and quantities and the price list."""
        total = Decimal(0)
        for text in self.charges:
            fields = text.split("|")
            code, quantity = fields[7].split("^")[0], Decimal(fields[10])
            total += PRICES[code][1] * quantity
        return total

    @property
    def key(self) -> str:
        return f"Encounter/{self.encounter_id}"


def visits(count: int) -> list[Visit]:
    return [Visit(n=n, mrn=f"B{n:06d}", number=f"{n:06d}",
                  charges=[ft1(1, code="OPD001", txn=f"T{n}-1"),
                           ft1(2, code="LAB025", quantity=str(1 + n % 3), txn=f"T{n}-2")])
            for n in range(count)]


@dataclass
class Server:
    """A server process with its MLLP listener, the billing worker on or off."""

    label: str
    bill_on_finish: bool
    base: Path
    visits: list[Visit] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FHIR_", "MONGODB_"))}
        env |= {"FHIR_DATA_DIR": str(self.base / self.label), "FHIR_PORT": str(port),
                "FHIR_HOST": "127.0.0.1", "FHIR_AUTH": "off", "FHIR_LOG_LEVEL": "WARNING",
                "FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir",
                "FHIR_TERMINOLOGY_LOAD": "false", "FHIR_HL7V2_PORT": str(free_port()),
                "FHIR_BILLING_PROVIDER": PROVIDER,
                "FHIR_BILL_ON_FINISH": "true" if self.bill_on_finish else "false"}
        if os.environ.get("MONGODB_URI"):
            env |= {"MONGODB_URI": os.environ["MONGODB_URI"],
                    "MONGODB_DATABASE": f"a03_bench_{self.label}_{uuid.uuid4().hex[:8]}"}
        self.env = env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['FHIR_PORT']}/fhir/"

    @property
    def hl7_port(self) -> int:
        return int(self.env["FHIR_HL7V2_PORT"])

    def start(self) -> None:
        with (self.base / f"{self.label}.log").open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"],
                                         env=self.env, cwd=ROOT, stdout=out, stderr=out)
        deadline = time.monotonic() + SERVER_TIMEOUT
        ready = self.url.removesuffix("fhir/") + "ready"
        while True:
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (log: {self.base})")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


async def load(server: Server, http: httpx.AsyncClient) -> None:
    """The price list, then each visit admitted (A04 with IN1) and charged (DFT^P03) over
    MLLP; then the Encounter's id of each visit."""
    for code in PRICES:
        r = await post(http, "ChargeItemDefinition", charge_item_definition(code))
        assert r.status_code == 201, r.text
    async with mllp(server.hl7_port) as conn:
        for v in server.visits:
            for text in (adt("A04", mrn=v.mrn, visit=v.number, admitted=ADMITTED,
                             insurance=[in1(member=f"M-{v.n}")]),
                         dft(mrn=v.mrn, visit=v.number, charges=v.charges)):
                ack = await conn.send(text)
                assert ack.code == "AA", ack.text
    by_number = {v.number: v for v in server.visits}
    url: str | None = "Encounter?_count=500&_elements=identifier"
    while url:
        r = await http.get(url)
        assert r.status_code == 200, r.text
        page = r.json()
        for entry in page.get("entry", []):
            for i in entry["resource"].get("identifier", []):
                if i.get("system") == MRN_SYSTEM and i["value"][1:] in by_number:
                    by_number[i["value"][1:]].encounter_id = entry["resource"]["id"]
        url = next((link["url"] for link in page.get("link", [])
                    if link["relation"] == "next"), None)
    assert all(v.encounter_id for v in server.visits), "a visit without its Encounter"


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def watch(http: httpx.AsyncClient, pending: dict[str, Visit], since: str,
                interval: float, stop: asyncio.Event) -> None:
    """One search for the issued Invoices since ``since`` a ``interval``; marks the visits
    whose bill it finds."""
    params = {"status": "issued", "_lastUpdated": f"ge{since}", "_count": "1000",
              "_elements": "identifier"}
    while not stop.is_set():
        r = await http.get("Invoice", params=params)
        found = time.time()
        assert r.status_code == 200, r.text
        for entry in r.json().get("entry", []):
            invoice = entry["resource"]
            for i in invoice.get("identifier", []):
                v = pending.pop(i["value"], None) if i.get("system") == BILL_KEY else None
                if v is not None:
                    v.seen, v.committed = found, instant(invoice["meta"]["lastUpdated"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def discharge(server: Server, http: httpx.AsyncClient, block: list[Visit],
                    args: argparse.Namespace) -> None:
    """The block's A03s paced at ``--rate`` over one connection, while ``watch`` looks for
    their bills; with the worker on, until every bill is found."""
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    pending: dict[str, Visit] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(http, pending, since, args.poll / 1000, stop))
    try:
        async with mllp(server.hl7_port) as conn:
            start = time.perf_counter()
            for i, v in enumerate(block):
                if args.rate > 0:
                    await asyncio.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
                text = adt("A03", mrn=v.mrn, visit=v.number, admitted=ADMITTED,
                           discharged=DISCHARGED)
                sent = time.perf_counter()
                ack = await conn.send(text)
                v.round_trip = time.perf_counter() - sent
                v.acked = time.time()
                assert ack.code == "AA", ack.text
                if server.bill_on_finish:
                    pending[v.key] = v
        deadline = time.monotonic() + 120
        while server.bill_on_finish and pending:
            if watcher.done():
                watcher.result()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} bills did not appear: {list(pending)[:5]}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await watcher


async def verify(server: Server, http: httpx.AsyncClient) -> int:
    """Every visit finished; with the worker on, each has one issued Invoice of the total
    computed from its charges and one Claim. The number of bills found."""
    r = await http.get("Encounter", params={"status": "finished", "_summary": "count"})
    assert r.json()["total"] == len(server.visits), r.text
    if not server.bill_on_finish:
        r = await http.get("Invoice", params={"_summary": "count"})
        assert r.json()["total"] == 0, "a bill with the worker off"
        return 0
    bills = 0
    for v in server.visits:
        key = f"{BILL_KEY}|{v.key}"
        invoices = (await http.get("Invoice", params={"identifier": key})).json()
        [invoice] = [e["resource"] for e in invoices.get("entry", [])]
        assert invoice["status"] == "issued"
        assert Decimal(str(invoice["totalGross"]["value"])) == v.expected, (v.n, invoice)
        claims = (await http.get("Claim", params={"identifier": key})).json()
        [claim] = [e["resource"] for e in claims.get("entry", [])]
        assert claim["provider"] == {"reference": PROVIDER}
        bills += 1
    return bills


async def measure(args: argparse.Namespace, off: Server, on: Server) -> int:
    timeout = httpx.Timeout(SERVER_TIMEOUT)
    async with httpx.AsyncClient(base_url=off.url, timeout=timeout) as off_http, \
            httpx.AsyncClient(base_url=on.url, timeout=timeout) as on_http:
        clients = {off.label: off_http, on.label: on_http}
        started = time.perf_counter()
        await asyncio.gather(load(off, off_http), load(on, on_http))
        print(f"loaded {args.visits} visits on each server in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        size = -(-args.visits // args.blocks)
        for b in range(args.blocks):
            for server in (off, on):
                block = server.visits[b * size:(b + 1) * size]
                if block:
                    await discharge(server, clients[server.label], block, args)
        await verify(off, off_http)
        return await verify(on, on_http)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def report(args: argparse.Namespace, off: Server, on: Server, bills: int,
           loads: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    engine = "MongoDB (MONGODB_URI)" if os.environ.get("MONGODB_URI") else "embedded SQLite"
    print(f"\nbill on finish: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {engine}")
    print("load average (1/5/15 min) at start: " + " / ".join(f"{x:.2f}" for x in loads[0])
          + ", at end: " + " / ".join(f"{x:.2f}" for x in loads[1]))
    print(f"{args.visits} visits per server, A03s at {args.rate}/s in {args.blocks} blocks "
          f"taken in turn, bill search every {args.poll} ms\n")
    trips = {s.label: [v.round_trip for v in s.visits] for s in (off, on)}
    print("| measurement | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|")
    for s in (off, on):
        t = trips[s.label]
        print(f"| A03 round trip, worker {s.label} | {ms(percentile(t, 0.5))} | "
              f"{ms(percentile(t, 0.95))} | {ms(percentile(t, 0.99))} |")
    readable = [v.seen - v.acked for v in on.visits]
    committed = [v.committed - v.acked for v in on.visits]
    for name, values in (("ACK to bill found over REST", readable),
                         ("ACK to bill committed (meta.lastUpdated)", committed)):
        print(f"| {name} | {ms(percentile(values, 0.5))} | {ms(percentile(values, 0.95))} "
              f"| {ms(percentile(values, 0.99))} |")
    added = percentile(trips["on"], 0.95) - percentile(trips["off"], 0.95)
    bill_p95 = percentile(readable, 0.95)
    print(f"\nbills: {bills} of {len(on.visits)} visits, each one issued Invoice of the total "
          f"computed from its FT1s and the price list, and one Claim")
    print(f"added A03 p95 with the worker on: {ms(added)} ms (target < 50 ms): "
          f"{'met' if added < ADDED_P95_TARGET else 'NOT met'}")
    print(f"ACK to bill found, p95: {ms(bill_p95)} ms (target < 1,000 ms): "
          f"{'met' if bill_p95 < BILL_P95_TARGET else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--visits", type=int, default=200, help="discharges per server")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="A03s a second (0: back to back)")
    parser.add_argument("--blocks", type=int, default=4,
                        help="blocks of discharges, taken in turn by the two servers")
    parser.add_argument("--poll", type=int, default=25, help="bill search interval, ms")
    args = parser.parse_args()
    loads = [os.getloadavg()]
    base = Path(tempfile.mkdtemp(prefix="a03-bench-"))
    off = Server("off", False, base, visits(args.visits))
    on = Server("on", True, base, visits(args.visits))
    try:
        off.start()
        on.start()
        bills = asyncio.run(measure(args, off, on))
    finally:
        off.stop()
        on.stop()
    loads.append(os.getloadavg())
    report(args, off, on, bills, (loads[0], loads[1]))


if __name__ == "__main__":
    main()
