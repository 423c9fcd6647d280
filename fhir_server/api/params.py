"""Query parameters shared by interactions: _count, _since, _at, conditional criteria."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request

from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid
from fhir_server.search.dates import date_range
from fhir_server.search.parse import parse_count

OUTPUT_PARAMETERS = frozenset({"_format", "_pretty", "_summary", "_elements"})


def count_param(request: Request, settings: Settings) -> int:
    return parse_count(request.query_params.get("_count"), settings)


def since_param(request: Request) -> datetime | None:
    raw = request.query_params.get("_since")
    if raw is None:
        return None
    return date_range(raw, param="_since")[0]


def at_param(request: Request) -> tuple[datetime, datetime] | None:
    raw = request.query_params.get("_at")
    return None if raw is None else date_range(raw, param="_at")


def criteria(request: Request) -> list[tuple[str, str]]:
    """The search criteria of a conditional interaction (output parameters dropped)."""
    return [(k, v) for k, v in request.query_params.multi_items() if k not in OUTPUT_PARAMETERS]


def criteria_from_header(value: str) -> list[tuple[str, str]]:
    """If-None-Exist holds a query string, with or without a leading '[type]?'."""
    from urllib.parse import parse_qsl

    query = value.split("?", 1)[1] if "?" in value else value
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Invalid("If-None-Exist is not a valid query string",
                      expression=["If-None-Exist"]) from None
