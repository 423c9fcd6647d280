"""FHIR JSON in and out, keeping every value exactly as the client wrote it.

Decimals are parsed as ``Decimal`` and written back with their original
digits (``1.50`` stays ``1.50``); dates and strings are never reformatted.
The stored form of a resource is its JSON text, produced once at write time.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.errors import Invalid

JsonObject = dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_float(text: str) -> Decimal:
    return Decimal(text)


def parse_json(body: bytes, *, what: str = "request body") -> Any:
    """Parse JSON, keeping decimals exact; malformed JSON is a 400."""
    if not body.strip():
        raise Invalid(f"The {what} is empty", code="structure")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"The {what} is not UTF-8 (byte {exc.start})", code="structure") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_float=_parse_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"The {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="structure",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"The {what} is not valid JSON: {type(exc).__name__}", code="structure") from None


def parse_resource(body: bytes) -> JsonObject:
    """Parse a request body that must be one JSON object."""
    value = parse_json(body)
    if not isinstance(value, dict):
        raise Invalid(
            f"The request body must be a JSON object (a FHIR resource), not a {type(value).__name__}",
            code="structure",
        )
    return value


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)


def loads_stored(text: str | bytes) -> Any:
    """Parse JSON the server itself wrote (trusted, exact decimals)."""
    return json.loads(text, parse_float=_parse_float)
