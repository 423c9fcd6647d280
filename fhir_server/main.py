"""create_app(): wiring only."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from fhir_server.adapters import amqp, ehr_schedule
from fhir_server.adapters.ehr_fhir import FhirEhrAdapter
from fhir_server.adapters.hl7v2.listener import start_listener, stop_listener
from fhir_server.adapters.payer_fhir import FhirPayerAdapter
from fhir_server.adapters.payer_x12 import PayerRouter, X12PayerAdapter
from fhir_server.adapters.peer_http import PeerHttp
from fhir_server.adapters.x12.state import X12State
from fhir_server.api import batch, bulk, capability, interactions, operations, websocket
from fhir_server.api.body_limit import BodyLimit, BodyLimits
from fhir_server.api.context import RequestContext
from fhir_server.api.cors import Cors
from fhir_server.api.error_handlers import InternalErrors, install_handlers
from fhir_server.api.metrics_route import metrics_route
from fhir_server.api.negotiation import check_accept, json_response
from fhir_server.audit.journal import Journal
from fhir_server.audit.trail import AuditTrail
from fhir_server.auth import server as auth_server
from fhir_server.auth.enforce import enforce_request
from fhir_server.auth.origins import AllowedOrigins
from fhir_server.auth.tokens import create_auth
from fhir_server.core.config import Settings, get_settings
from fhir_server.core.models import resource_types
from fhir_server.events.runner import Runner
from fhir_server.notifications import consumer as notifications
from fhir_server.observability import business, metrics, rate_limit, shutdown, tracing
from fhir_server.operations import (
    billing_worker,
    denial_worker,
    next_payer_worker,
    worklist_worker,
)
from fhir_server.operations.bulk_export import job_records, stop_jobs
from fhir_server.operations.bulk_export_retention import RetentionSweeper
from fhir_server.operations.registry import OPERATIONS
from fhir_server.operations.x12_poll import start_poller
from fhir_server.revenue.billing import price_definition
from fhir_server.runtime.startup import (
    REQUEST_WAIT,
    RETRY_AFTER,
    Startup,
    Step,
    on_own_loop,
    request_started,
)
from fhir_server.runtime.warmup import Warmup, warmed
from fhir_server.service import write_rules as rules
from fhir_server.service.rules import register_all as register_resource_rules
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.instrumented import instrument_repository
from fhir_server.storage.model import instant, now_ms
from fhir_server.storage.open import open_repository, unavailable_errors
from fhir_server.subscriptions import rule as subscription_rule
from fhir_server.subscriptions.consumer import SubscriptionsConsumer
from fhir_server.subscriptions.sockets import SocketHub
from fhir_server.terminology.loader import load as load_terminology

log = logging.getLogger("fhir_server")


def quiet_driver_logs() -> None:
    """The MongoDB driver logs whole commands and replies (resource bodies) at DEBUG: keep it
    at INFO or above whatever FHIR_LOG_LEVEL says, so health data never reaches the log."""
    driver = logging.getLogger("pymongo")
    if driver.getEffectiveLevel() < logging.INFO:
        driver.setLevel(logging.INFO)


def journal_name(settings: Settings) -> str:
    """Names the audit journal's segments after the database they belong to."""
    return settings.mongodb_database if settings.mongodb_uri else "sqlite"


async def _count_login(event: Any) -> None:
    business.login(event.success)


async def _load_terminology(settings: Settings) -> None:
    """The terminology packs, loaded through a connection of their own (``on_own_loop``)."""
    repo = await open_repository(settings)
    try:
        await load_terminology(repo, settings)
    finally:
        await repo.close()


def startup_steps(app: FastAPI, settings: Settings) -> list[Step]:
    """What the app needs before it serves FHIR, in order; each step pushes its undoing."""

    async def database(stack: AsyncExitStack) -> None:
        repo = instrument_repository(await open_repository(settings))
        stack.push_async_callback(repo.close)
        app.state.repo, app.state.engine = repo, repo.engine

    async def services(stack: AsyncExitStack) -> None:
        repo = app.state.repo
        http = PeerHttp(settings)
        x12 = X12PayerAdapter(settings, http=http, state=X12State(repo.records))
        app.state.services = operations.Services(
            payer=PayerRouter(fhir=FhirPayerAdapter(settings, http=http), x12=x12), x12=x12,
            ehr=FhirEhrAdapter(settings))
        stack.push_async_callback(app.state.services.ehr.close)
        stack.push_async_callback(app.state.services.payer.close)
        app.state.auth = await create_auth(store=AuthStore(records=repo.records),
                                           settings=settings)
        journal = (Journal(settings.fhir_data_dir / "audit-journal", journal_name(settings))
                   if settings.fhir_audit_journal else None)
        app.state.audit = AuditTrail(repo=repo, settings=settings, journal=journal)
        app.state.origins = AllowedOrigins(store=app.state.auth.store, settings=settings,
                                           unavailable=unavailable_errors())
        app.state.auth.on_login(app.state.audit.on_login)
        app.state.auth.on_login(_count_login)
        await app.state.audit.start()
        # stopped after the loops below: flushes the queued AuditEvents before the database
        stack.push_async_callback(app.state.audit.stop)
        # The consumers of change events (Subscriptions, the broker bridge, the billing
        # worker, the worklist worker, the patient notifications) join this list.
        runner = Runner(repo=repo, settings=settings,
                        consumers=[SubscriptionsConsumer(repo=repo, settings=settings,
                                                         audit=app.state.audit.record),
                                   *amqp.bridges(settings=settings, repo=repo),
                                   *billing_worker.workers(settings=settings, repo=repo),
                                   *worklist_worker.workers(settings=settings, repo=repo,
                                                            services=app.state.services),
                                   *next_payer_worker.workers(settings=settings, repo=repo,
                                                              services=app.state.services),
                                   *denial_worker.workers(settings=settings, repo=repo),
                                   *notifications.workers(settings=settings, repo=repo)])
        runner.start()
        stack.push_async_callback(runner.stop)
        app.state.events = runner
        # Websocket Subscriptions' sockets bound in this process, and their reader.
        app.state.sockets = SocketHub(repo=repo, settings=settings)
        stack.push_async_callback(app.state.sockets.stop)
        poller = start_poller(repo=repo, settings=settings, services=app.state.services)
        if poller is not None:
            stack.push_async_callback(poller.stop)
        sweeper = RetentionSweeper(settings=settings, jobs=job_records(repo))
        sweeper.start()
        stack.push_async_callback(sweeper.stop)
        # before the database closes (a job still writing would find it closed)
        stack.push_async_callback(stop_jobs, settings, job_records(repo))

    async def terminology(stack: AsyncExitStack) -> None:
        await on_own_loop(lambda: _load_terminology(settings))

    async def listeners(stack: AsyncExitStack) -> None:
        stack.push_async_callback(stop_listener, app)
        await start_listener(app, price_definition=price_definition)
        stack.push_async_callback(ehr_schedule.stop, app)
        await ehr_schedule.start(app)
        log.info("serving base_url=%s engine=%s", settings.base_url, app.state.engine.name)

    steps = [Step("database", database), Step("services", services)]
    if settings.fhir_terminology_load:
        steps.append(Step("terminology", terminology))
    return [*steps, Step("listeners", listeners)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    register_resource_rules()
    subscription_rule.register()
    rules.on_commit(business.writes_committed)
    quiet_driver_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started = instant(now_ms())
        startup: Startup = app.state.startup
        # Served by uvicorn: answer at once, start in the background. In-process (tests, the
        # CLI's load): start before serving.
        server = shutdown.install_drain(app.state, settings.fhir_shutdown_drain_seconds,
                                        starting=lambda: not startup.done)
        tracing.configure(settings)
        try:
            await app.state.warmup.start(settings, app.state.started)  # in a worker thread
            startup.begin(startup_steps(app, settings),
                          on_failure=lambda: shutdown.stop_server(server))
            if server is None:
                await startup.wait()
            yield
        finally:
            await startup.stop(settings.fhir_shutdown_grace_seconds)
            await app.state.warmup.stop()
            tracing.shutdown()  # send the last spans
            multiproc_dir = settings.prometheus_multiproc_dir
            metrics.worker_stopped(str(multiproc_dir) if multiproc_dir else None, os.getpid())

    app = FastAPI(title="FHIR revenue-cycle server", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.warmup = Warmup()
    app.state.startup = Startup()
    install_handlers(app, unavailable=unavailable_errors())

    # The last added is the outermost. Internal errors and the body limit inside CORS, so
    # that a browser app can read its 500 and 413; all inside the request context, so that
    # preflights, 413s and 500s get a request id, a log line and their metrics.
    app.add_middleware(InternalErrors)
    app.add_middleware(BodyLimit, limits=BodyLimits.of(
        settings, x12_operations=operations.x12_operations()))
    app.add_middleware(Cors, base_url=settings.base_url, max_age=settings.fhir_cors_max_age,
                       startup_wait=REQUEST_WAIT, retry_after=RETRY_AFTER)
    app.add_middleware(RequestContext, labels=metrics.RequestLabels(
        resource_types=frozenset(resource_types()),
        operations=frozenset(f"${op.code}" for op in OPERATIONS)))

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> Response:
        if getattr(request.app.state, "draining", False):
            return json_response({"status": "stopping"}, status=503)
        waiting = [*request.app.state.startup.waiting(),
                   *([] if request.app.state.warmup.done else ["models"])]
        if request.app.state.startup.failed is not None:
            return json_response({"status": "failed"}, status=503)
        if waiting:
            return json_response({"status": "starting", "waiting": waiting}, status=503)
        try:
            await request.app.state.repo.ping()
        except Exception as exc:
            log.warning("readiness check failed error=%s", type(exc).__name__)
            return json_response({"status": "unavailable"}, status=503)
        return json_response({"status": "ready"})

    app.add_api_route("/metrics", metrics_route(settings), methods=["GET"],
                      include_in_schema=False)

    # FHIR_RATE_LIMIT_PER_MINUTE: by address where there is no token, else by client id.
    limits = rate_limit.limiters(settings)
    by_address = [Depends(limits[0])] if limits else []
    by_client = [Depends(limits[1])] if limits else []
    # before /fhir/{type}/{id}: .well-known
    # A request that arrives before the start-up is done waits for it a little, else 503.
    started = [Depends(request_started)]
    app.include_router(auth_server.router, dependencies=[*started, *by_address])
    # A FHIR request that arrives before the start-up work is done waits for it.
    fhir_deps = [Depends(warmed), Depends(check_accept)]
    app.include_router(capability.router, prefix="/fhir",
                       dependencies=[*started, *by_address, *fhir_deps])
    # Every FHIR route but /metadata needs a token (auth/enforce.py): 401 before 406.
    guarded = [*started, Depends(enforce_request), *by_client, *fhir_deps]
    app.include_router(batch.router, prefix="/fhir", dependencies=guarded)
    # Bulk export: files are NDJSON, so no FHIR JSON Accept check on this router.
    app.include_router(bulk.router, prefix="/fhir",
                       dependencies=[*started, Depends(enforce_request), *by_client])
    app.include_router(interactions.hot_router, prefix="/fhir", dependencies=guarded)
    app.include_router(operations.build_router(), prefix="/fhir", dependencies=guarded)
    app.include_router(interactions.router, prefix="/fhir", dependencies=guarded)
    app.include_router(operations.unknown, prefix="/fhir", dependencies=guarded)
    # R4 websocket Subscriptions: authorised in the route, as a socket has no FHIR request.
    app.add_api_websocket_route(websocket.PATH, websocket.subscription_socket)
    return app
