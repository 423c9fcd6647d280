"""What a server process and its supervisor agree on: the exit codes and the stop signals.

A server process (``serving.py``) exits ``EXIT_STARTUP_FAILURE`` when its start-up fails,
and the supervisor of ``FHIR_WORKERS`` processes (``supervisor.py``) stops them all when one
does; both stop on ``STOP_SIGNALS``.
"""

from __future__ import annotations

import signal

EXIT_STARTUP_FAILURE = 3  # as uvicorn's own CLI
EXIT_BAD_CONFIGURATION = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
