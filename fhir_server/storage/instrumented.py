"""Database calls measured: the repository's methods timed, and traced when tracing is on.

``instrument_repository`` replaces the public coroutine methods of the one repository
the app opens with wrappers (once, at start-up), so every caller (the scoped repository
of a request, the audit writer, operations) is measured without knowing it. Nested calls
inside an engine are measured where they go through these methods.

Which methods: every public coroutine method the abstract ``Repository`` declares
(``database_calls``), so a method added to the interface is measured without a list to
keep, except the lifecycle (``open``, ``close``: once per process, around the
instrumentation) and ``check_target`` (a check of the caller's token; on the base
repository it does nothing).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from fhir_server.observability import metrics, tracing
from fhir_server.storage.repository import Repository

NOT_DATABASE_CALLS = frozenset({"open", "close", "check_target"})


@cache
def database_calls() -> tuple[str, ...]:
    """The repository interface's database calls: its public coroutine methods (inherited
    from nothing but ``Repository`` itself), lifecycle and access checks left out."""
    return tuple(name for name, member in vars(Repository).items()
                 if not name.startswith("_") and inspect.iscoroutinefunction(member)
                 and name not in NOT_DATABASE_CALLS)


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
    for name in database_calls():
        call = getattr(repo, name, None)
        if call is None:
            continue
        wrapped = (metrics.timed_db_call(name, call) if tracer is None
                   else _traced(name, call, engine, tracer))
        setattr(repo, name, wrapped)
    return repo
