"""Prometheus metrics: what is measured, and the cheap calls that record it.

Labels are bounded and never carry health data: route templates (``/fhir/{type_}/{id_}``,
never the path), interaction codes, resource types the server serves, operation names the
server defines, status codes, outcomes, the peer kind and its ``Endpoint/<id>``.
Anything a client chooses outside those sets is recorded as ``other``.

With several worker processes (``FHIR_WORKERS`` > 1) the command line gives the workers a
shared directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus-client's multiprocess mode):
every worker writes its values there and ``/metrics``, whichever worker answers it,
adds them up, so counters never appear to reset between scrapes. Gauges are summed over
the live workers (queue depth, in-flight requests) or their maximum (an open circuit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

OTHER = "other"
NONE = ""  # no interaction or resource type (the token endpoint, /health)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# -- RED: requests, errors, duration --------------------------------------------------------
REQUESTS = Counter("fhir_http_requests", "HTTP requests answered.",
                   ["method", "route", "interaction", "resource_type", "code"])
REQUEST_SECONDS = Histogram("fhir_http_request_duration_seconds",
                            "Time from a request's arrival to its answer's start.",
                            ["method", "route", "interaction", "resource_type"],
                            buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("fhir_http_requests_in_flight", "Requests being served.",
                  multiprocess_mode="livesum")
RATE_LIMITED = Counter("fhir_rate_limited", "Requests answered 429 by the rate limit.",
                       ["client_kind"])
# -- the database ---------------------------------------------------------------------------
DB_SECONDS = Histogram("fhir_db_call_duration_seconds",
                       "Repository calls (reads, searches, writes, transactions).",
                       ["operation", "outcome"], buckets=DB_BUCKETS)
# -- search values ----------------------------------------------------------------------------
EXTRACTION_FAILURES = Counter("fhir_search_extraction_failures",
                              "Search values a write could not extract (the resource is stored "
                              "without them), by resource type and search parameter.",
                              ["resource_type", "parameter"])
# -- payers and EHRs ------------------------------------------------------------------------
ADAPTER_CALLS = Counter("fhir_adapter_calls", "Calls to payers and EHRs, by outcome "
                        "(ok, refused, failed, timeout, circuit_open).",
                        ["peer", "endpoint", "outcome"])
ADAPTER_SECONDS = Histogram("fhir_adapter_call_duration_seconds",
                            "Calls to payers and EHRs, retries included.",
                            ["peer", "endpoint"], buckets=LATENCY_BUCKETS)
CIRCUIT_OPEN = Gauge("fhir_adapter_circuit_open", "1 while a peer's circuit breaker is open "
                     "or half-open.", ["peer", "endpoint"], multiprocess_mode="livemax")
# -- the audit trail ------------------------------------------------------------------------
AUDIT_QUEUED = Gauge("fhir_audit_queue_depth", "AuditEvents waiting to be written.",
                     multiprocess_mode="livesum")
AUDIT_JOURNAL_BYTES = Gauge("fhir_audit_journal_bytes", "Size of the audit journal segments "
                            "this process holds.", multiprocess_mode="livesum")
AUDIT_WRITTEN = Counter("fhir_audit_events_written", "AuditEvents written to the database.")
AUDIT_DROPPED = Counter("fhir_audit_events_dropped", "AuditEvents dropped from a full queue.")
# -- Subscriptions ----------------------------------------------------------------------------
NOTIFICATIONS = Counter("fhir_subscription_notifications", "Subscription notification "
                        "attempts by outcome (delivered, failed; gave_up: the Subscription "
                        "went to error) and channel (rest-hook, email).",
                        ["outcome", "channel"])
# -- change events (the outbox's consumers) -------------------------------------------------
# Set by the process that holds a consumer's lease (0 elsewhere): the maximum over workers.
CONSUMER_LAG_EVENTS = Gauge("fhir_events_consumer_lag_events", "Change events committed that "
                            "a consumer has not done yet (the outbox's last number minus its "
                            "cursor), as of its last look.", ["consumer"],
                            multiprocess_mode="livemax")
CONSUMER_LAG_SECONDS = Gauge("fhir_events_consumer_lag_seconds", "Age of the oldest change "
                             "event a consumer has not done yet (0: none waits), as of its "
                             "last look.", ["consumer"], multiprocess_mode="livemax")


@dataclass(frozen=True)
class RequestLabels:
    """The bounded label values of a request, told at start-up by ``main.py``'s wiring (this
    module imports nothing above ``fhir_server/core``): the resource types the server
    serves and the names of the operations it defines (``$submit``...)."""

    resource_types: frozenset[str]
    operations: frozenset[str]

    def of(self, interaction: Any, bundle_type: str | None) -> tuple[str, str]:
        """(interaction, resource type) labels of a classified FHIR request (None: not FHIR)."""
        if interaction is None:
            return NONE, NONE
        code: str = interaction.code
        if code == "operation":
            code = interaction.operation if interaction.operation in self.operations else OTHER
        elif code == "transaction-or-batch":
            code = bundle_type if bundle_type in ("transaction", "batch") else code
        type_ = interaction.type_
        return code, (NONE if type_ is None else type_ if type_ in self.resource_types else OTHER)


class RequestRecorder:
    """Records answered requests; one labelled child per label set, looked up once."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def record(self, *, method: str, route: str, interaction: str, resource_type: str,
               status: int, seconds: float) -> None:
        if method not in METHODS:
            method = OTHER
        key = (method, route, interaction, resource_type, str(status))
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(*key), REQUEST_SECONDS.labels(*key[:4]))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


REQUEST_RECORDER = RequestRecorder()


def timed_db_call(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (a repository coroutine method) timed into ``fhir_db_call_duration_seconds``."""
    ok, error = DB_SECONDS.labels(name, "ok"), DB_SECONDS.labels(name, "error")

    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except BaseException:
            error.observe(time.perf_counter() - start)
            raise
        ok.observe(time.perf_counter() - start)
        return result

    timed.__name__ = name
    return timed


def extraction_failed(*, resource_type: str, parameter: str) -> None:
    """A search parameter's values could not be extracted from a resource
    (``search/extract.py``); both labels come from the search-parameter registry."""
    EXTRACTION_FAILURES.labels(resource_type, parameter).inc()


def adapter_call(*, peer: str, endpoint: str, outcome: str, seconds: float | None,
                 circuit_open: bool) -> None:
    """One call to a payer or an EHR (``fhir_server/adapters/peer_http.py``)."""
    ADAPTER_CALLS.labels(peer, endpoint, outcome).inc()
    if seconds is not None:
        ADAPTER_SECONDS.labels(peer, endpoint).observe(seconds)
    CIRCUIT_OPEN.labels(peer, endpoint).set(1 if circuit_open else 0)


def audit_state(*, queued: int, journal_bytes: int) -> None:
    AUDIT_QUEUED.set(queued)
    AUDIT_JOURNAL_BYTES.set(journal_bytes)


def notification(outcome: str, channel: str) -> None:
    NOTIFICATIONS.labels(outcome, channel).inc()


def consumer_lag(*, consumer: str, events: int, seconds: float) -> None:
    """How far a consumer of change events is behind (``fhir_server/events/runner.py``); the
    label is a consumer's name, which the code defines."""
    CONSUMER_LAG_EVENTS.labels(consumer).set(events)
    CONSUMER_LAG_SECONDS.labels(consumer).set(seconds)


def exposition(multiproc_dir: str | None) -> tuple[bytes, str]:
    """The text format of every metric (of every worker, in multiprocess mode)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_stopped(multiproc_dir: str | None, pid: int) -> None:
    """A worker's live gauges leave the sums when it stops."""
    if multiproc_dir:
        prom_multiprocess.mark_process_dead(pid, path=multiproc_dir)
