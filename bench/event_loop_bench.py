"""Does one large request hold up the others? A server process (`python -m fhir_server serve`)
takes a large transaction Bundle (every Synthea bundle merged into one, about 1,000
resources and 3.5 MB) while a second client asks `GET /health` every 20 ms on its own
connection; the answer times of those small requests during the large one show how long the
event loop was blocked.

Run: python bench/event_loop_bench.py [--copies 1] [--runs 3]
With MONGODB_URI set, the server uses that database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SERVER_TIMEOUT, cli_token, server_env, start_server

from fhir_server.core.fhirjson import dumps
from tools.data_sets import SYNTHEA_BUNDLES as SYNTHEA

PROBE_EVERY = 0.02


def big_transaction(copies: int) -> bytes:
    """Every Synthea bundle's entries in one transaction (``copies`` times, fresh fullUrls)."""
    entries: list[dict[str, Any]] = []
    for _ in range(copies):
        for path in sorted(SYNTHEA.glob("*.json")):
            text = path.read_text()
            for old in {e["fullUrl"] for e in json.loads(text)["entry"]}:
                text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
            entries += json.loads(text, parse_float=Decimal)["entry"]
    return dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def probe(base: str, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    """(sent at, seconds to answer) of GET /health, one every PROBE_EVERY."""
    with httpx.Client(timeout=SERVER_TIMEOUT) as http:
        while not stop.is_set():
            sent = time.perf_counter()
            assert http.get(f"{base}/health").status_code == 200
            out.append((sent, time.perf_counter() - sent))
            time.sleep(PROBE_EVERY)


def wait_ready(proc: Any, base: str) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    with httpx.Client(timeout=SERVER_TIMEOUT) as http:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http.get(f"{base}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError("the server did not become ready")


def one_run(base: str, token: str, body: bytes) -> tuple[float, list[float], list[float]]:
    """(seconds of the large request, probe answer times idle, probe answer times during)."""
    idle: list[tuple[float, float]] = []
    stop = threading.Event()
    thread = threading.Thread(target=probe, args=(base, stop, idle))
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join()
    during: list[tuple[float, float]] = []
    stop = threading.Event()
    thread = threading.Thread(target=probe, args=(base, stop, during))
    thread.start()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(timeout=SERVER_TIMEOUT * 5) as http:
        start = time.perf_counter()
        resp = http.post(f"{base}/fhir", content=body, headers=headers)
        seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    assert resp.status_code == 200, resp.text[:300]
    inside = [t for sent, t in during if start <= sent <= start + seconds]
    return seconds, [t for _, t in idle], inside


def ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=1, help="Synthea sets in the Bundle")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loop-bench-") as data_dir:
        env = server_env({**os.environ, "FHIR_DATA_DIR": data_dir, "FHIR_LOG_LEVEL": "WARNING",
                          "MONGODB_DATABASE": f"bench_{uuid.uuid4().hex[:12]}"})
        proc, base = start_server(env)
        try:
            wait_ready(proc, base)
            token = cli_token(env)
            print(f"event_loop_bench: {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f}")
            for _ in range(args.runs):
                body = big_transaction(args.copies)
                seconds, idle, inside = one_run(base, token, body)
                print(f"transaction of {len(body) / 1e6:.1f} MB: {seconds:.1f} s; GET /health "
                      f"idle p50 {ms(idle, 0.5)} ms; during it ({len(inside)} probes) "
                      f"p50 {ms(inside, 0.5)} / p99 {ms(inside, 0.99)} / max "
                      f"{max(inside) * 1000:.0f} ms, median of probes "
                      f"{statistics.median(inside) * 1000:.0f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
