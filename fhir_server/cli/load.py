"""``fhir-server load PATH...``: Bundle JSON and NDJSON files into a server or the database.

Bundles are posted as transactions (a ``batch`` or ``collection`` is turned into a
transaction of PUTs where entries carry ids, POSTs otherwise). NDJSON lines become
transactions of PUT entries, ``--chunk`` resources each, so that conditional
references such as Synthea's ``Practitioner?identifier=...`` are resolved by the
server. NDJSON files are loaded in an order where referenced types come first.
``history`` Bundles (``fhir-server export --history``) are replayed version by
version: the first version of every resource, then the second, and so on, with
deletions where the history has them. Without ``--url`` the server runs
in-process on the configured database.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from fhir_server.core.fhirjson import dumps

FIRST = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient",
         "RelatedPerson", "Coverage", "Encounter")
MEDIA = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@dataclass
class Summary:
    loaded: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.loaded / self.seconds if self.seconds else 0.0
        return (f"loaded {self.loaded} resources, failed {self.failed}, "
                f"{self.seconds:.1f} s, {rate:.0f} resources/s")


def _rank(path: Path) -> tuple[int, str]:
    stem = path.name.split(".")[0]
    return (FIRST.index(stem) if stem in FIRST else len(FIRST), path.name)


def discover(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [p for p in path.iterdir() if p.suffix in (".json", ".ndjson")]
            if (path / "history").is_dir():  # what `fhir-server export --history` writes
                files += sorted((path / "history").glob("*.json"))
        else:
            files.append(path)
    bundles = sorted(p for p in files if p.suffix == ".json")
    # Shared resources (hospital, practitioner bundles) before the patients that cite them.
    bundles.sort(key=lambda p: 0 if "Information" in p.name else 1)
    ndjson = sorted((p for p in files if p.suffix == ".ndjson"), key=_rank)
    return ndjson + bundles


def audit_files(paths: list[Path]) -> list[Path]:
    """The AuditEvents `fhir-server export` wrote (``DIR/audit/*.ndjson``)."""
    return sorted(p for path in paths if path.is_dir() and (path / "audit").is_dir()
                  for p in (path / "audit").glob("*.ndjson"))


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open() as lines:
        return [json.loads(line, parse_float=Decimal) for line in lines if line.strip()]


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST",
                                                                       "url": str(rtype)}
    return {"resource": resource, "request": request}


def _as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    if bundle.get("type") in ("transaction",):
        return bundle
    entries = []
    for e in bundle.get("entry") or []:
        if "request" in e and bundle.get("type") == "batch":
            entries.append(e)
        elif isinstance(e.get("resource"), dict):
            entries.append({**_entry(e["resource"]), **({"fullUrl": e["fullUrl"]}
                                                        if "fullUrl" in e else {})})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _replay(bundle: dict[str, Any], size: int) -> Iterator[dict[str, Any]]:
    """A history Bundle (oldest first) as transactions: every resource's first version,
    then every second one..., ``size`` entries a transaction."""
    per_resource: dict[str, list[dict[str, Any]]] = {}
    for e in bundle.get("entry") or []:
        request = e.get("request") or {}
        if request.get("method") == "PUT" and isinstance(e.get("resource"), dict):
            change = {"resource": e["resource"], "request": {"method": "PUT",
                                                             "url": request.get("url")}}
        elif request.get("method") == "DELETE":
            change = {"request": {"method": "DELETE", "url": request.get("url")}}
        else:
            continue
        per_resource.setdefault(str(request.get("url")), []).append(change)
    depth = max((len(v) for v in per_resource.values()), default=0)
    for layer in range(depth):
        entries = [v[layer] for v in per_resource.values() if len(v) > layer]
        for start in range(0, len(entries), size):
            yield {"resourceType": "Bundle", "type": "transaction",
                   "entry": entries[start:start + size]}


def chunks(path: Path, size: int) -> Iterator[dict[str, Any]]:
    if path.suffix == ".json":
        bundle = json.loads(path.read_text(), parse_float=Decimal)
        if bundle.get("type") == "history":
            yield from _replay(bundle, size)
        else:
            yield _as_transaction(bundle)
        return
    batch: list[dict[str, Any]] = []
    with path.open() as lines:
        for line in lines:
            if line.strip():
                batch.append(_entry(json.loads(line, parse_float=Decimal)))
            if len(batch) == size:
                yield {"resourceType": "Bundle", "type": "transaction", "entry": batch}
                batch = []
    if batch:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": batch}


def _progress(summary: Summary, name: str, started: float) -> None:
    elapsed = time.monotonic() - started
    rate = summary.loaded / elapsed if elapsed else 0.0
    sys.stderr.write(f"\r{name[:40]:<40} loaded {summary.loaded:>8} failed {summary.failed:>6} "
                     f"{rate:8.0f}/s")
    sys.stderr.flush()


async def load(client: httpx.AsyncClient, paths: list[Path], *, chunk: int = 200,
               progress: bool = True) -> Summary:
    summary = Summary()
    started = time.monotonic()
    for path in discover(paths):
        try:
            bundles = list(chunks(path, chunk))
        except (OSError, ValueError) as exc:
            summary.failed += 1
            summary.errors.append(f"{path.name}: cannot read ({type(exc).__name__})")
            continue
        for bundle in bundles:
            count = len(bundle.get("entry") or [])
            resp = await client.post("", content=dumps(bundle), headers=MEDIA)
            if resp.status_code == 200:
                summary.loaded += count
            else:
                summary.failed += count
                detail = resp.json().get("issue", [{}])[0].get("diagnostics", "") \
                    if resp.headers.get("content-type", "").startswith("application/fhir+json") \
                    else resp.text[:200]
                summary.errors.append(f"{path.name}: {resp.status_code} {detail[:300]}")
            if progress:
                _progress(summary, path.name, started)
    if progress:
        sys.stderr.write("\n")
    summary.seconds = time.monotonic() - started
    return summary
