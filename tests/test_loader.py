"""`fhir-server load`: NDJSON and Bundles into a running server, conditional references resolved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.store import HTTP_TIMEOUT, ROOT
from tools.data_sets import SYNTHEA_BULK as BULK

ENCOUNTERS = 60


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FHIR_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "fhir_server", "load", "--quiet", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split(" ", 1)[1]


@pytest.mark.slow
@pytest.mark.process
def test_load_ndjson_into_running_server(live_server: str, live_headers: dict[str, str],
                                        tmp_path: Path) -> None:
    for name in ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient"):
        (tmp_path / f"{name}.ndjson").write_text((BULK / f"{name}.ndjson").read_text())
    lines = (BULK / "Encounter.ndjson").read_text().splitlines()[:ENCOUNTERS]
    (tmp_path / "Encounter.ndjson").write_text("\n".join(lines) + "\n")
    expected = {p.stem: sum(1 for line in p.read_text().splitlines() if line.strip())
                for p in tmp_path.glob("*.ndjson")}

    done = _run(["--url", live_server, "--token", _token(live_headers), "--chunk", "50", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"loaded {sum(expected.values())} resources, failed 0" in done.stdout

    for type_, count in expected.items():
        total = httpx.get(f"{live_server}/{type_}", params={"_summary": "count"},
                          headers=live_headers, timeout=HTTP_TIMEOUT).json()["total"]
        assert total == count, type_
    # Synthea's conditional references now point at the practitioner with that NPI.
    first = json.loads(lines[0])
    conditional = first["participant"][0]["individual"]["reference"]
    npi = conditional.split("identifier=", 1)[1]
    practitioner = httpx.get(f"{live_server}/Practitioner", params={"identifier": npi},
                             headers=live_headers, timeout=HTTP_TIMEOUT).json()
    pid = practitioner["entry"][0]["resource"]["id"]
    stored = httpx.get(f"{live_server}/Encounter/{first['id']}", headers=live_headers,
                       timeout=HTTP_TIMEOUT).json()
    assert stored["participant"][0]["individual"]["reference"] == f"Practitioner/{pid}"


@pytest.mark.slow
@pytest.mark.process
def test_load_reports_failures(live_server: str, live_headers: dict[str, str],
                               tmp_path: Path) -> None:
    good = {"resourceType": "Patient", "id": "ok-1", "gender": "female"}
    bad = {"resourceType": "Patient", "id": "bad-1", "gender": "robot"}
    (tmp_path / "Patient.ndjson").write_text(json.dumps(good) + "\n")
    (tmp_path / "broken.ndjson").write_text(json.dumps(bad) + "\n{not json\n")
    (tmp_path / "bad.ndjson").write_text(json.dumps(bad) + "\n")
    done = _run(["--url", live_server, "--token", _token(live_headers), str(tmp_path)])
    assert done.returncode == 1
    assert "failed" in done.stdout and "loaded 1 resources" in done.stdout
    for id_, status in (("ok-1", 200), ("bad-1", 404)):
        assert httpx.get(f"{live_server}/Patient/{id_}", headers=live_headers,
                         timeout=HTTP_TIMEOUT).status_code == status
