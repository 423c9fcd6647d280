"""deploy/grafana/fhir-server.json: every query names metrics and labels the server really
exposes, and every metric the server exposes is on the dashboard."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from fhir_server.observability import business, metrics
from tests.support.store import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "fhir-server.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
METRIC = re.compile(r"\bfhir_[a-z_]+")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
# Labels every scraped sample gets from Prometheus, and the histogram's bucket bound.
ADDED = {"job", "instance", "le"}


def exposed() -> dict[str, tuple[str, set[str]]]:
    """Sample name -> (metric, its labels), for every metric the server defines."""
    out = {}
    for module in (metrics, business):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                family = value._name  # the name without the counter's _total
                for suffix in SUFFIXES[value._type]:
                    out[family + suffix] = (family, set(value._labelnames))
    return out


def queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    query = board["templating"]["list"][1]["query"]["query"]
    found.append(("variable job", query))
    return found


def test_queries_name_exposed_metrics_and_labels() -> None:
    names = exposed()
    for title, expr in queries():
        used = METRIC.findall(expr)
        assert used, (title, expr)
        labels = set().union(*(names[m][1] for m in used if m in names)) | ADDED
        for name in used:
            assert name in names, f"{title}: {name} is not a metric the server exposes"
        for group in GROUPING.findall(expr):
            grouped = {label.strip() for label in group.split(",")}
            assert grouped <= labels, (title, grouped - labels)
        for selector in SELECTOR.findall(expr):
            matched = {part.split("=")[0].rstrip("!~") for part in selector.split(",")}
            assert matched <= labels, (title, matched - labels)


def test_every_metric_is_on_the_dashboard() -> None:
    on_board = {exposed()[name][0] for _, expr in queries() for name in METRIC.findall(expr)}
    assert on_board == {family for family, _ in exposed().values()}


def test_panels_fit_the_grid() -> None:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
