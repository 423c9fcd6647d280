"""Start-up work: everything a request would otherwise compute the first time it needs it.

The app's lifespan starts it (``Warmup.start``) and does not wait: the work runs in a
worker thread, so ``/health`` answers at once and the event loop keeps serving while the
models are imported. ``/ready`` answers 503 until it is done; a FHIR request that arrives
before (an in-process client, a caller that did not wait for ``/ready``) waits for it.
Once done, no request imports a module or walks a package:

* the model class of every served resource type, and every element class they reach
  (importing the data type modules the models resolve lazily), with the element
  metadata ``_summary``/``_elements`` use;
* the search-parameter registry of every served type, each FHIRPath expression compiled;
* the tables read from ``fhir_server/data`` (compartment, required bindings, roles);
* the CapabilityStatement of this app (the OperationDefinitions are built with the routes).

Then what start-up built is moved out of the garbage collector's reach (``gc.freeze``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel

from fhir_server.api.capability import statement_for
from fhir_server.auth import passwords, roles
from fhir_server.core.config import Settings
from fhir_server.core.models import inner_class, model_classes
from fhir_server.search.compartment import patient_compartment
from fhir_server.search.extract import SERVER_VALUES
from fhir_server.search.registry import params_for
from fhir_server.service.subsetting import elements_of
from fhir_server.service.validation import required_bindings

log = logging.getLogger("fhir_server.runtime.warmup")


@dataclass(frozen=True)
class Prepared:
    """What the start-up work leaves for the routes of one app."""

    capability: dict[str, Any]
    seconds: float


def _element_classes(roots: Iterable[type[BaseModel]]) -> int:
    """Resolve every element class reachable from the resource models; their count."""
    seen: set[type[BaseModel]] = set()
    stack = list(roots)
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        elements_of(cls)
        for field in cls.model_fields.values():
            inner = inner_class(field.annotation)
            if inner is not None and inner not in seen:
                stack.append(inner)
    return len(seen)


def _search_registry(types: Iterable[str]) -> int:
    """Every served type's search parameters, with the expressions that extraction evaluates
    compiled (the server's own values are not extracted); their count."""
    count = 0
    for type_ in types:
        for code, param in params_for(type_).items():
            if code not in SERVER_VALUES:
                param.evaluators()
            count += 1
    return count


@cache
def _process_tables() -> str:
    """The work every app of the process shares (done by the first); what it did."""
    classes = model_classes()
    elements = _element_classes(classes.values())
    params = _search_registry(classes)
    patient_compartment()
    required_bindings()
    for role in roles.ROLES:
        roles.grants_of(role)
    passwords.dummy_hash()
    # What start-up built (models, schemas, compiled expressions: about 400,000 objects) stays
    # for the life of the process: out of every later garbage collection, whose pauses stop
    # all threads (a full one took up to 0.9 s during a 3.8 MB transaction without this).
    # No collection first: it costs 0.5 s and finds a few hundred objects.
    gc.freeze()
    return (f"types={len(classes)} element_classes={elements} search_params={params} "
            f"frozen_objects={gc.get_freeze_count()}")


def prepare(settings: Settings, started: str) -> Prepared:
    """The start-up work itself (blocking: run it in a worker thread)."""
    begin = time.perf_counter()
    done = _process_tables()
    capability = statement_for(settings, started)
    seconds = time.perf_counter() - begin
    log.info("warm-up done seconds=%.2f %s", seconds, done)
    return Prepared(capability=capability, seconds=seconds)


class Warmup:
    """The start-up work of one app: started by its lifespan, awaited by /ready and routes."""

    def __init__(self) -> None:
        self._task: asyncio.Task[Prepared] | None = None

    async def start(self, settings: Settings, started: str) -> None:
        await anyio.sleep(0)  # loads anyio's asyncio backend, else the first request would
        self._task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(prepare, settings, started), name="warm-up")
        self._task.add_done_callback(_log_failure)

    @property
    def done(self) -> bool:
        """Finished, and without an error."""
        task = self._task
        return task is not None and task.done() and not task.cancelled() \
            and task.exception() is None

    async def result(self) -> Prepared:
        if self._task is None:
            raise RuntimeError("the app's lifespan has not started its warm-up")
        return await asyncio.shield(self._task)

    async def stop(self) -> None:
        """At shutdown: let a warm-up still running finish (a thread cannot be interrupted)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])


def _log_failure(task: asyncio.Task[Prepared]) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("warm-up failed error=%s", type(error).__name__, exc_info=error)


async def warmed(request: Request) -> Prepared:
    """Dependency of the FHIR routes: what the warm-up prepared (waiting for it if need be)."""
    warmup: Warmup = request.app.state.warmup
    return await warmup.result()
