"""Each change event keeps the W3C traceparent of the span that committed it (with tracing
on), on every engine and in the same commit; with tracing off, or with no span current, it
keeps none. A SQLite file made before the column existed keeps working."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fhir_server.core.config import Settings
from fhir_server.observability import tracing
from fhir_server.storage.model import now_ms
from fhir_server.storage.open import open_repository, sqlite_path
from fhir_server.storage.repository import PlannedWrite, Repository
from tests.support.store import ENGINE, Store


def _text(n: int) -> str:
    return f'{{"resourceType":"Basic","id":"b{n}"}}'


def _traceparent(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@pytest.fixture
def tracer(tmp_path: Path) -> Iterator[trace.Tracer]:
    """Tracing on, in this process, exporting to memory."""
    made = tracing.configure(Settings(fhir_data_dir=tmp_path), exporter=InMemorySpanExporter())
    assert made is not None
    try:
        yield made
    finally:
        tracing.shutdown()


async def test_an_event_committed_with_tracing_off_carries_no_trace(
        repo: Repository, tmp_path: Path) -> None:
    assert tracing.configure(Settings(fhir_data_dir=tmp_path)) is None
    start = await repo.last_event()
    await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                     method="POST")
    await repo.commit_transaction([PlannedWrite("Basic", "b2", None, _text(2), {}, "POST")],
                                  ts=now_ms())
    events = await repo.events(after=start, limit=10)
    assert len(events) == 2
    assert [e.trace for e in events] == [None, None]


async def test_an_event_keeps_the_traceparent_of_the_span_that_committed_it(
        repo: Repository, tracer: trace.Tracer) -> None:
    start = await repo.last_event()
    with tracer.start_as_current_span("write") as one:
        await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                         method="POST")
    with tracer.start_as_current_span("transaction") as other:
        await repo.commit_transaction(
            [PlannedWrite("Basic", "b2", None, _text(2), {}, "POST")], ts=now_ms(),
            side_effects=[PlannedWrite("Basic", "b3", None, _text(3), {}, "POST")])
    # Tracing on, but no span current: nothing to continue.
    await repo.write(type_="Basic", id_="b4", previous=None, text=_text(4), index={},
                     method="POST")
    events = await repo.events(after=start, limit=10)
    assert [(e.id_, e.trace) for e in events] == [
        ("b1", _traceparent(one)), ("b2", _traceparent(other)), ("b3", _traceparent(other)),
        ("b4", None)]


@pytest.mark.skipif(ENGINE != "sqlite", reason="the sqlite engine's schema")
async def test_a_sqlite_file_made_before_the_trace_column_keeps_working(
        store: Store, tracer: trace.Tracer) -> None:
    settings = store.settings()
    repo = await open_repository(settings)
    await repo.write(type_="Basic", id_="b1", previous=None, text=_text(1), index={},
                     method="POST")
    await repo.close()
    # The file as an earlier version of the server left it: no trace column.
    with sqlite3.connect(sqlite_path(settings)) as old:
        old.execute("ALTER TABLE events DROP COLUMN tp")
    repo = await open_repository(settings)
    try:
        with tracer.start_as_current_span("write") as span:
            await repo.write(type_="Basic", id_="b2", previous=None, text=_text(2), index={},
                             method="POST")
        events = await repo.events(after=0, limit=10)
    finally:
        await repo.close()
    assert [(e.id_, e.trace) for e in events] == [("b1", None), ("b2", _traceparent(span))]
