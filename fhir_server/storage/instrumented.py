"""Database calls measured: the repository's methods timed, and traced when tracing is on.

``instrument_repository`` replaces the public coroutine methods of the one repository
the app opens with wrappers (once, at start-up), so every caller (the scoped repository
of a request, the audit writer, operations) is measured without knowing it. Nested calls
inside an engine are measured where they go through these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from fhir_server.observability import metrics, tracing
from fhir_server.storage.repository import Repository

CALLS = ("ping", "current", "version", "types", "peek", "exists", "search", "count",
         "matches", "fetch", "references", "history", "write", "commit_transaction",
         "append_new")


def _traced(name: str, call: Callable[..., Any], engine: str,
            tracer: Any) -> Callable[..., Any]:
    timed = metrics.timed_db_call(name, call)
    attributes = {"db.system": engine, "db.operation.name": name}

    async def traced(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(f"db {name}", kind=SpanKind.CLIENT,
                                          attributes=attributes, record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                return await timed(*args, **kwargs)
            except BaseException as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    return traced


def instrument_repository(repo: Repository) -> Repository:
    """Wrap ``repo``'s database calls in place; returns it."""
    tracer = tracing.tracer()
    engine = getattr(getattr(repo, "engine", None), "name", "unknown")
    for name in CALLS:
        call = getattr(repo, name, None)
        if call is None:
            continue
        wrapped = (metrics.timed_db_call(name, call) if tracer is None
                   else _traced(name, call, engine, tracer))
        setattr(repo, name, wrapped)
    return repo
