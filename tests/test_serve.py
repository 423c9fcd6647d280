"""`python -m fhir_server serve` on the embedded SQLite database: in-process, serves, stops
cleanly (the write-ahead log checkpointed and removed), keeps writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.conftest import ROOT, free_port
from tests.factories import patient

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env.update({"FHIR_DATA_DIR": str(data_dir), "FHIR_PORT": str(port),
                "FHIR_LOG_LEVEL": "WARNING", "FHIR_WORKERS": "1"})
    return env


def operator_token(data_dir: Path, port: int) -> str:
    """An admin token from the operator's CLI, run against the running server's database."""
    env = server_env(data_dir, port)
    cli = [sys.executable, "-m", "fhir_server"]
    jwks = data_dir / "ops-jwks.json"  # a backend client's public key (a fresh one)
    jwks.write_text(json.dumps({"keys": [ECKey.generate_key("P-384").as_dict(private=False)]}))
    added = subprocess.run([*cli, "clients", "add", "--id", "ops", "--jwks-file", str(jwks),
                            "--scope", "system/*.cruds"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr[-2000:]
    token = subprocess.run([*cli, "token", "--client", "ops", "--scope", "system/*.cruds"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert token.returncode == 0, token.stderr[-2000:]
    return token.stdout.strip().splitlines()[-1]


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = server_env(data_dir, port)
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "the server exited during start-up"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not become ready")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_embedded_stops_cleanly_and_keeps_writes(tmp_path: Path,
                                                       stop_signal: signal.Signals) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    proc = start(tmp_path, port)
    try:
        assert not children(proc.pid), "the embedded database runs in the server's process"
        assert (tmp_path / "fhir.sqlite3").is_file()
        meta = httpx.get(f"{base}/metadata").json()
        assert meta["fhirVersion"] == "4.0.1"
        auth = {"Authorization": f"Bearer {operator_token(tmp_path, port)}"}
        created = httpx.post(f"{base}/Patient", json=patient(family="Durable"), headers=auth)
        assert created.status_code == 201
        pid = created.json()["id"]
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
        # A clean close checkpoints the write-ahead log into the database file and removes it.
        assert not (tmp_path / "fhir.sqlite3-wal").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
    again = start(tmp_path, port)
    try:
        read = httpx.get(f"{base}/Patient/{pid}", headers=auth)  # the keys outlived the restart
        assert read.status_code == 200
        assert read.json()["name"][0]["family"] == "Durable"
    finally:
        again.terminate()
        assert again.wait(timeout=30) == 0
