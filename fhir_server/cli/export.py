"""``fhir-server export --out DIR``: a server's data as files the loader reads back.

Current versions go to ``DIR/Type.ndjson`` (one resource a line, as FHIR Bulk
Data exports them). With ``--history`` every version goes instead to
``DIR/history/Type.json``, a FHIR ``history`` Bundle, oldest first, with
deletions as ``DELETE`` entries; ``fhir-server load DIR`` replays it version
by version, so each resource gets the same versions, contents and deletions
(written with PUT, at new ``lastUpdated`` instants: a FHIR server sets those itself).

AuditEvents, which no client may write, go to ``DIR/audit/AuditEvent.ndjson``;
an in-process ``fhir-server load`` writes them back through the audit trail with
their ids. Moving from one engine to another is ``export`` on the old one and
``load`` on the new one. ``--from-ferretdb PATH`` reads a data directory written by the
embedded FerretDB of earlier versions (it starts that FerretDB for the export).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fhir_server.core.fhirjson import dumps, loads_stored
from fhir_server.search.query import EVERYTHING, SortKey
from fhir_server.storage.model import StoredVersion, instant
from fhir_server.storage.repository import HistoryCursor, Repository

CHUNK = 500
ALL = 10**9
AUDIT_TYPE = "AuditEvent"


@dataclass
class Exported:
    resources: int = 0
    versions: int = 0
    types: int = 0

    def line(self) -> str:
        return (f"exported {self.resources} resources ({self.versions} versions) "
                f"of {self.types} types")


async def _current(repo: Repository, type_: str) -> AsyncIterator[StoredVersion]:
    ids = await repo.search(type_=type_, query=EVERYTHING, sort=(SortKey("_id"),), limit=ALL)
    for start in range(0, len(ids), CHUNK):
        for stored in await repo.fetch(type_=type_, ids=ids[start:start + CHUNK]):
            yield stored


async def _versions(repo: Repository, type_: str) -> list[StoredVersion]:
    """Every version of the type's resources, oldest first."""
    found: list[StoredVersion] = []
    cursor: HistoryCursor | None = None
    while True:
        page = await repo.history(type_=type_, count=CHUNK, cursor=cursor)
        found += page.versions
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    found.reverse()
    return found


def _history_entry(v: StoredVersion) -> dict[str, object]:
    url = f"{v.type_}/{v.id_}"
    response = {"status": "204" if v.deleted else "200", "etag": v.etag,
                "lastModified": instant(v.last_updated)}
    if v.deleted:
        return {"request": {"method": "DELETE", "url": url}, "response": response}
    return {"fullUrl": url, "resource": loads_stored(v.text or "{}"),
            "request": {"method": "PUT", "url": url}, "response": response}


async def export(repo: Repository, out: Path, *, history: bool = False,
                 types: list[str] | None = None) -> Exported:
    out.mkdir(parents=True, exist_ok=True)
    summary = Exported()
    for type_ in types or await repo.types():
        if type_ == AUDIT_TYPE:
            (out / "audit").mkdir(exist_ok=True)
            with (out / "audit" / f"{type_}.ndjson").open("wb") as lines:
                async for stored in _current(repo, type_):
                    lines.write((stored.text or "").encode() + b"\n")
                    summary.resources += 1
                    summary.versions += 1
            summary.types += 1
            continue
        if history:
            versions = await _versions(repo, type_)
            if not versions:
                continue
            (out / "history").mkdir(exist_ok=True)
            bundle = {"resourceType": "Bundle", "type": "history", "total": len(versions),
                      "entry": [_history_entry(v) for v in versions]}
            (out / "history" / f"{type_}.json").write_bytes(dumps(bundle))
            summary.versions += len(versions)
            summary.resources += len({v.id_ for v in versions})
            summary.types += 1
            continue
        written = 0
        with (out / f"{type_}.ndjson").open("wb") as lines:
            async for stored in _current(repo, type_):
                lines.write((stored.text or "").encode() + b"\n")
                written += 1
        if written:
            summary.resources += written
            summary.versions += written
            summary.types += 1
        else:
            (out / f"{type_}.ndjson").unlink()
    return summary
