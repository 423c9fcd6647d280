"""Building Bundles (history, searchset) around stored JSON text without re-parsing it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.core.errors import Invalid
from fhir_server.storage.model import StoredVersion, instant, now_ms
from fhir_server.storage.repository import HistoryCursor

STATUS_OF_METHOD = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK",
                    "DELETE": "204 No Content"}


def http_date(ts: datetime) -> str:
    return format_datetime(ts.astimezone(UTC), usegmt=True)


def version_headers(stored: StoredVersion, base_url: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.last_updated),
        "Content-Location": f"{base_url}/{stored.reference}/_history/{stored.version}",
    }


def resource_fragment(stored: StoredVersion) -> Any:
    """The stored text, embedded as-is in a larger JSON document."""
    assert stored.text is not None
    return orjson.Fragment(stored.text.encode())


def _millis(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _from_millis(value: str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def encode_cursor(cursor: HistoryCursor) -> str:
    assert cursor.ts is not None and cursor.key is not None
    raw = f"{_millis(cursor.as_of)}|{_millis(cursor.ts)}|{cursor.key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> HistoryCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        as_of, ts, key = raw.split("|", 2)
        return HistoryCursor(as_of=_from_millis(as_of), ts=_from_millis(ts), key=key)
    except (ValueError, UnicodeDecodeError, OverflowError, OSError):
        raise Invalid("_cursor is not a cursor this server issued", expression=["_cursor"]) from None


def link(base: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return f"{base}/{path}" + (f"?{query}" if query else "")


def history_bundle(*, base_url: str, versions: list[StoredVersion], total: int | None,
                   links: dict[str, str]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for v in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{v.reference}"}
        if not v.deleted:
            entry["resource"] = resource_fragment(v)
        entry["request"] = {"method": v.method,
                            "url": v.type_ if v.method == "POST" else v.reference}
        entry["response"] = {"status": STATUS_OF_METHOD.get(v.method, "200 OK"),
                             "etag": v.etag, "lastModified": instant(v.last_updated)}
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": _bundle_id(),
        "meta": {"lastUpdated": instant(now_ms())},
        "type": "history",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    bundle["entry"] = entries
    return bundle


def searchset_bundle(*, base_url: str, matches: list[StoredVersion],
                     included: list[StoredVersion], total: int | None,
                     links: dict[str, str]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": _bundle_id(),
        "meta": {"lastUpdated": instant(now_ms())},
        "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    bundle["entry"] = [
        {"fullUrl": f"{base_url}/{m.reference}", "resource": resource_fragment(m),
         "search": {"mode": mode}}
        for group, mode in ((matches, "match"), (included, "include"))
        for m in group
    ]
    return bundle


def _bundle_id() -> str:
    return str(uuid.uuid4())
