"""`python -m fhir_server serve` on the embedded SQLite database: in-process, serves, stops
cleanly (the write-ahead log checkpointed and removed), keeps writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.factories import patient
from tests.support.server_process import children, free_port, stop_process, wait_ready
from tests.support.store import HTTP_TIMEOUT, ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


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
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    except RuntimeError:
        stop_process(proc, signal.SIGKILL)
        raise
    return proc


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_embedded_stops_cleanly_and_keeps_writes(tmp_path: Path,
                                                       stop_signal: signal.Signals) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    proc = start(tmp_path, port)
    try:
        assert not children(proc.pid), "the embedded database runs in the server's process"
        assert (tmp_path / "fhir.sqlite3").is_file()
        meta = httpx.get(f"{base}/metadata", timeout=HTTP_TIMEOUT).json()
        assert meta["fhirVersion"] == "4.0.1"
        auth = {"Authorization": f"Bearer {operator_token(tmp_path, port)}"}
        created = httpx.post(f"{base}/Patient", json=patient(family="Durable"), headers=auth,
                             timeout=HTTP_TIMEOUT)
        assert created.status_code == 201
        pid = created.json()["id"]
        assert stop_process(proc, stop_signal) == 0
        # A clean close checkpoints the write-ahead log into the database file and removes it.
        assert not (tmp_path / "fhir.sqlite3-wal").exists()
    finally:
        stop_process(proc, signal.SIGKILL)
    again = start(tmp_path, port)
    try:
        # the keys outlived the restart
        read = httpx.get(f"{base}/Patient/{pid}", headers=auth, timeout=HTTP_TIMEOUT)
        assert read.status_code == 200
        assert read.json()["name"][0]["family"] == "Durable"
    finally:
        assert stop_process(again) == 0
