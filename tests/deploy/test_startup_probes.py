"""The probes that watch a start-up allow a first start (the terminology load) with margin:
Kubernetes' startupProbe and the Docker HEALTHCHECK's start period. The figure is measured
(docs/benchmarks.md, "Start-up"): process start to /ready 200 on a new data directory, FHIR_WORKERS=2."""

from __future__ import annotations

import re

import yaml

from tests.support.store import ROOT

FIRST_START_SECONDS = 47  # the slowest of five, on the build machine (2 cores, load 2 to 5)
MARGIN = 3  # a slower node, a busier one: the budget is this many first starts


def test_the_kubernetes_startup_probe_waits_for_ready_through_a_first_start() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    [main] = deployment["spec"]["template"]["spec"]["containers"]
    probe = main["startupProbe"]
    assert probe["httpGet"]["path"] == "/ready"
    assert probe["periodSeconds"] * probe["failureThreshold"] >= MARGIN * FIRST_START_SECONDS
    # Liveness takes over after it, on /health, which answers during a start-up too.
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"


def test_the_docker_healthcheck_start_period_covers_a_first_start() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [period] = re.findall(r"HEALTHCHECK .*--start-period=(\d+)s", dockerfile)
    assert int(period) >= MARGIN * FIRST_START_SECONDS
