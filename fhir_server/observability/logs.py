"""Log set-up: key=value text lines, or one JSON object per line (``FHIR_LOG_FORMAT=json``).

Every line carries the id of the request being served and its trace id (``-`` / null
outside a request): ``api/context.py`` sets them in context variables for the request's
task, which the tasks it starts inherit. The request line adds the route template, the
status and the duration; its path is the route template where the path holds a caller's
capability (an export job id: ``loggable_path``). Only what the server passes to the logger is written: an
exception's message (which can quote resource content) never is, only its type and stack.
"""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TRACE_ID: ContextVar[str | None] = ContextVar("trace_id", default=None)
# Fields the request line passes through ``extra``: copied into the JSON object.
REQUEST_FIELDS = ("method", "route", "status", "duration_ms")
# Path parameters that are one caller's capability (a Bulk Data export job): a line about a
# request whose route has one logs the route's template, never the path.
PRIVATE_PARAMETERS = ("{job}",)
TEXT_FORMAT = ("ts=%(asctime)s level=%(levelname)s logger=%(name)s request_id=%(request_id)s "
               "trace_id=%(trace_id)s msg=%(message)s")
STACK_FRAMES = 6


def loggable_path(path: str, route: str | None) -> str:
    """The path of a request as its log lines show it (``PRIVATE_PARAMETERS``)."""
    if route and any(name in route for name in PRIVATE_PARAMETERS):
        return route
    return path


class RequestIds(logging.Filter):
    """Adds ``request_id`` and ``trace_id`` to every record (for the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        record.trace_id = TRACE_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
            "trace_id": TRACE_ID.get(),
        }
        for name in REQUEST_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            out["error"] = type(error).__name__  # never str(error): it can quote content
            frames = traceback.format_tb(error.__traceback__)[-STACK_FRAMES:]
            out["stack"] = "".join(frames).replace("\n", " | ")
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The key=value line; an exception adds its type and stack, never its message."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        frames = traceback.format_tb(ei[2])[-STACK_FRAMES:]
        return f"error={ei[0].__name__} stack=" + "".join(frames).replace("\n", " | ")


def setup_logging(level: str, fmt: str = "text") -> None:
    """The root logger: to stderr, in ``fmt`` (text or json), at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIds())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
