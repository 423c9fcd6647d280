"""`python -m fhir_server serve` on the embedded SQLite database: in-process, serves, stops
cleanly (the write-ahead log checkpointed and removed), keeps writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.factories import patient
from tests.support.server_process import children, launch, server_env
from tests.support.store import HTTP_TIMEOUT, ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


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


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_embedded_stops_cleanly_and_keeps_writes(tmp_path: Path,
                                                       stop_signal: signal.Signals) -> None:
    first = launch(tmp_path)
    port, base = first.port, first.base
    try:
        first.wait_ready()
        assert not children(first.proc.pid), "the embedded database runs in the server's process"
        assert (tmp_path / "fhir.sqlite3").is_file()
        meta = httpx.get(f"{base}/metadata", timeout=HTTP_TIMEOUT).json()
        assert meta["fhirVersion"] == "4.0.1"
        auth = {"Authorization": f"Bearer {operator_token(tmp_path, port)}"}
        created = httpx.post(f"{base}/Patient", json=patient(family="Durable"), headers=auth,
                             timeout=HTTP_TIMEOUT)
        assert created.status_code == 201
        pid = created.json()["id"]
        assert first.stop(stop_signal) == 0
        # A clean close checkpoints the write-ahead log into the database file and removes it.
        assert not (tmp_path / "fhir.sqlite3-wal").exists()
    finally:
        first.kill()
    again = launch(tmp_path, port=port)
    try:
        again.wait_ready()
        # the keys outlived the restart
        read = httpx.get(f"{base}/Patient/{pid}", headers=auth, timeout=HTTP_TIMEOUT)
        assert read.status_code == 200
        assert read.json()["name"][0]["family"] == "Durable"
    finally:
        assert again.stop() == 0
