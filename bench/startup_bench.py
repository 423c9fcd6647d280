"""Start-up: what `make run` runs (`python -m fhir_server serve`) until `/ready` answers 200,
then the first `GET /fhir/metadata` and the first create of a type the process has not seen.

Each run starts a server on a fresh FHIR_DATA_DIR (the first start after install: the
embedded database and the signing keys are created), stops it, and starts it again on the
same directory (a restart). A token for the create comes from the CLI, as the README shows
(`fhir-server clients add`, `fhir-server token`), between the two timed requests.

Run: python bench/startup_bench.py [--runs 5]
With MONGODB_URI set, the server uses that database (a fresh database name per run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SERVER_TIMEOUT, cli_token, server_env, start_server

# Types no earlier request of the process has touched; one per start.
UNSEEN = ({"resourceType": "Basic", "code": {"text": "bench"}},
          {"resourceType": "Substance", "code": {"text": "bench"}})


@dataclass
class Start:
    health_s: float  # process start to the first /health 200
    ready_s: float  # process start to the first /ready 200
    metadata_ms: float
    create_ms: float


def one_start(env: dict[str, str], unseen: dict[str, object]) -> Start:
    env = server_env(env)
    started = time.perf_counter()
    proc, base = start_server(env)
    health = ready = None
    try:
        with httpx.Client(timeout=SERVER_TIMEOUT) as http:
            while ready is None:
                if proc.poll() is not None or time.perf_counter() - started > SERVER_TIMEOUT:
                    raise RuntimeError("the server did not become ready")
                try:
                    if health is None and http.get(f"{base}/health").status_code == 200:
                        health = time.perf_counter() - started
                    if http.get(f"{base}/ready").status_code == 200:
                        ready = time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            t = time.perf_counter()
            assert http.get(f"{base}/fhir/metadata").status_code == 200
            metadata_ms = (time.perf_counter() - t) * 1000
            headers = {"Authorization": f"Bearer {cli_token(env)}",
                       "Content-Type": "application/fhir+json"}
            t = time.perf_counter()
            resp = http.post(f"{base}/fhir/{unseen['resourceType']}", json=unseen, headers=headers)
            create_ms = (time.perf_counter() - t) * 1000
            assert resp.status_code == 201, resp.text
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return Start(health if health is not None else ready, ready, metadata_ms, create_ms)


def summary(label: str, starts: list[Start]) -> str:
    def fmt(values: list[float], unit: str, digits: int) -> str:
        return (f"median {statistics.median(values):.{digits}f} {unit} "
                f"(min {min(values):.{digits}f}, max {max(values):.{digits}f})")

    return (f"{label}: /health {fmt([s.health_s for s in starts], 's', 2)}; "
            f"/ready {fmt([s.ready_s for s in starts], 's', 2)}; "
            f"first /metadata {fmt([s.metadata_ms for s in starts], 'ms', 1)}; "
            f"first create {fmt([s.create_ms for s in starts], 'ms', 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    fresh: list[Start] = []
    restart: list[Start] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="startup-bench-") as data_dir:
            env = {**os.environ, "FHIR_DATA_DIR": data_dir, "FHIR_LOG_LEVEL": "WARNING",
                   "MONGODB_DATABASE": f"bench_{uuid.uuid4().hex[:12]}"}
            fresh.append(one_start(env, UNSEEN[0]))
            restart.append(one_start(env, UNSEEN[1]))
    print(f"startup_bench: {args.runs} runs, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, database "
          f"{'MONGODB_URI' if os.environ.get('MONGODB_URI') else 'embedded'}")
    print(summary("first start", fresh))
    print(summary("restart", restart))


if __name__ == "__main__":
    main()
