"""Running the HTTP server: one process, or ``FHIR_WORKERS`` processes on one port.

Every server process runs ``run_server``: uvicorn on the app, and an exit code that says
how it went: 0 after a stop that was asked for (SIGTERM, SIGINT), ``EXIT_STARTUP_FAILURE``
when the start-up failed (the database could not be opened, a start-up step raised), so
that a supervisor (Kubernetes, systemd, ``make run``, ``supervisor.py``) sees it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from fhir_server.auth.key_files import KeyFileError, file_key_ring
from fhir_server.core.config import Settings, get_settings
from fhir_server.observability import logs
from fhir_server.runtime.booting import BootingApp
from fhir_server.runtime.exit_codes import EXIT_BAD_CONFIGURATION, EXIT_STARTUP_FAILURE, STOP_SIGNALS
from fhir_server.storage.open import StorageError, check_data_dir
from fhir_server.storage.private import private_dir

log = logging.getLogger("fhir_server")

METRICS_DIR = "metrics"  # under FHIR_DATA_DIR


class _StopRequestedError(Exception):
    """SIGTERM or SIGINT arrived outside uvicorn's own handling of them."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError(signal.Signals(signum).name)


def configured() -> Settings | None:
    """The settings from the environment, with logging set up and the files this process
    writes made private; None (after saying why) when the configuration is invalid."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"fhir-server: invalid configuration:\n{exc}", file=sys.stderr)
        return None
    logs.setup_logging(settings.fhir_log_level, settings.fhir_log_format)
    # What the server and its CLI write (the database, its key, the audit journal, export
    # files, metrics) is for this user alone: files 0600, directories 0700.
    os.umask(0o077)
    return settings


def serve_main() -> int:
    """``python -m fhir_server [serve]``: serve, without importing the rest of the CLI."""
    settings = configured()
    return EXIT_BAD_CONFIGURATION if settings is None else serve(settings)


def serve(settings: Settings) -> int:
    """Run the HTTP server (one process, or ``FHIR_WORKERS``); the exit code."""
    try:
        check_data_dir(settings)
        private_dir(settings.fhir_data_dir)
        file_key_ring(settings)  # a key file others can read: refused before serving
    except (StorageError, OSError, KeyFileError) as error:
        print(f"fhir-server: {error}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    if settings.fhir_workers > 1:
        return serve_workers(settings)
    return run_server(settings)


def run_server(settings: Settings, sockets: list[socket.socket] | None = None) -> int:
    """Serve the app in this process until it is stopped; the process's exit code."""
    # uvicorn handles SIGTERM/SIGINT while it runs (graceful shutdown), then restores these
    # handlers and raises the signal again: it must reach our finally, not kill the process.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stop)
    try:
        server: uvicorn.Server | None = None

        def build() -> Any:  # in a thread, while the port already answers /health
            from fhir_server.main import create_app

            return create_app(settings)

        def stop_serving() -> None:
            if server is not None:
                server.should_exit = True

        app = BootingApp(build, on_failure=stop_serving)
        server = uvicorn.Server(uvicorn.Config(
            app, host=settings.fhir_host, port=settings.fhir_port, log_config=None,
            access_log=False, lifespan="on",
            timeout_graceful_shutdown=settings.fhir_shutdown_grace_seconds,
            # uvicorn believes X-Forwarded-For from loopback by default: only from these.
            proxy_headers=bool(settings.fhir_trusted_proxies),
            forwarded_allow_ips=settings.fhir_trusted_proxies or None))
        server.run(sockets)
        failed = app.failed or (app.app.state.startup.failed if app.app is not None else None)
        if isinstance(failed, StorageError):  # says what to do: to the operator's terminal
            print(f"fhir-server: {failed}", file=sys.stderr)
        if not server.started or failed is not None:
            return EXIT_STARTUP_FAILURE
    except _StopRequestedError as stop:
        log.info("stopping signal=%s", stop)
    finally:
        for sig in STOP_SIGNALS:  # let the database close cleanly, whatever else arrives
            signal.signal(sig, signal.SIG_IGN)
    return 0


def serve_workers(settings: Settings) -> int:
    """FHIR_WORKERS processes on one port, each with its own listening socket
    (``listening.py``): each builds the app from the same environment and opens the same
    database (``supervisor.py`` starts, replaces and stops them); the exit code is non-zero
    when the port cannot be bound or a worker's start-up failed."""
    from fhir_server.runtime.listening import worker_sockets
    from fhir_server.runtime.supervisor import Supervisor

    try:
        sockets = worker_sockets(settings.fhir_host, settings.fhir_port, settings.fhir_workers)
    except OSError as error:
        print(f"fhir-server: cannot listen on {settings.fhir_host}:{settings.fhir_port}: "
              f"{error}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    shared_metrics_dir(settings)
    config = uvicorn.Config("fhir_server.runtime.serving:run_worker", host=settings.fhir_host,
                            port=settings.fhir_port, log_config=None)
    # A stop waits for every worker's drain, grace and last flush, then kills what is left.
    stop_timeout = (settings.fhir_shutdown_drain_seconds
                    + settings.fhir_shutdown_grace_seconds + 15)
    supervisor = Supervisor(config=config, target=run_worker, sockets=sockets,
                            stop_timeout=stop_timeout)
    return supervisor.run()


def run_worker(sockets: list[socket.socket]) -> None:
    """A worker process's whole life (started by the supervisor, in a new interpreter)."""
    settings = get_settings()
    logs.setup_logging(settings.fhir_log_level, settings.fhir_log_format)
    sys.exit(run_server(settings, sockets))


def shared_metrics_dir(settings: Settings) -> Path:
    """An empty directory for the workers' metrics (prometheus-client's multiprocess mode,
    named by ``PROMETHEUS_MULTIPROC_DIR`` in the environment the workers inherit)."""
    directory = settings.fhir_data_dir / METRICS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # an earlier run's: its counts are not ours
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())
    return directory
