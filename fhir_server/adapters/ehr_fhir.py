"""Pulling from an EHR's FHIR API (SMART Backend Services): ``Endpoint/[id]/$sync``.

For each type (Organization, Location, Practitioner, Patient, Coverage, Encounter,
Appointment, in that order so that references find their targets), it searches the EHR
for what changed since that type's watermark (``_lastUpdated=ge...&_sort=_lastUpdated``,
following ``next`` links that stay on the EHR's address), and stores each page as one
transaction (``fhir_server/adapters/upsert.py``): every resource keyed by the EHR's id, kept as an
identifier whose system is the EHR's base URL, with its content replaced by the EHR's
(identifiers added here are kept) and its references to other synced resources rewritten
to this server's ids (references to anything else keep only a logical identifier). A
page that cannot be committed whole is committed resource by resource, and the ones
refused (a double booking, an invalid resource) are counted as failed.

The watermark of a type advances only after a page is committed, to the last
``meta.lastUpdated`` of that page (pages are sorted by it), so a sync that is interrupted
resumes where the last committed page ended; resources with that same instant are read
again and found unchanged (no duplicates, no losses: ``ge``, not ``gt``, because one EHR
transaction stamps many resources with the same instant). The calls use the shared
resilience (``fhir_server/adapters/peer_http.py``: timeouts, retries, circuit breaker, OAuth, the
address guard); when the EHR does not answer as asked the caller is told as for every
peer failure (``fhir_server/adapters/peer_errors.py``) and the log says what it was.

Every answer is read under FHIR_MAX_BUNDLE_BYTES (``fhir_server/adapters/peer_limits.py``), a search
page and a Bulk Data export file alike: an export file is read whole, then parsed and
stored in pages, so it is held in memory with its resources as a page is, and it must
arrive within one call's deadline (connect + read timeout). Bulk Data servers split a
type's output into several files, each read on its own; an EHR whose one file for a type
is larger fails the sync (the log says "answer over N bytes"): sync that type by search.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.peer_errors import unreachable
from fhir_server.adapters.peer_http import PeerHttp
from fhir_server.adapters.records import Records
from fhir_server.adapters.upsert import Wanted, WriteFailed, apply, lookup
from fhir_server.core.config import Settings
from fhir_server.core.errors import Conflict, Invalid, Upstream, UpstreamTimeout
from fhir_server.core.fhirjson import parse_json
from fhir_server.storage.locks import LockBusy
from fhir_server.storage.repository import Repository

log = logging.getLogger("fhir_server.adapters.ehr_fhir")
SYNC_TYPES = ("Organization", "Location", "Practitioner", "Patient", "Coverage", "Encounter",
              "Appointment")
# One sync of an Endpoint at a time, across processes; a process that dies mid-sync blocks
# the next one for this long at most.
DEFAULT_SCOPE = " ".join(f"system/{t}.rs" for t in SYNC_TYPES)
OUTCOMES = ("created", "updated", "unchanged", "failed")
BULK_WAIT = 600.0  # seconds a bulk export may take


@dataclass
class Summary:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)

    def add(self, type_: str, outcome: str, n: int = 1) -> None:
        self.counts.setdefault(type_, dict.fromkeys(OUTCOMES, 0))[outcome] += n


class FhirEhrAdapter:
    def __init__(self, settings: Settings, http: PeerHttp | None = None) -> None:
        self.settings = settings
        self.http = http or PeerHttp(settings, peer="EHR", default_scope=DEFAULT_SCOPE)

    async def close(self) -> None:
        await self.http.close()

    async def sync(self, *, repo: Repository, records: Records, endpoint: PayerEndpoint,
                   types: list[str], since: str | None, bulk: bool = False) -> Summary:
        try:
            async with repo.locks.hold([f"ehr-sync:{endpoint.reference}"], wait=0):
                return await self._sync(repo=repo, records=records, endpoint=endpoint,
                                        types=types, since=since, bulk=bulk)
        except LockBusy:
            raise Conflict(f"{endpoint.reference} is being synced already; try again "
                           "later") from None

    async def _sync(self, *, repo: Repository, records: Records, endpoint: PayerEndpoint,
                    types: list[str], since: str | None, bulk: bool) -> Summary:
        state = await records.get(endpoint.reference) or {}
        marks: dict[str, str] = dict(state.get("watermarks") or {})
        summary = Summary()
        if bulk:
            await self._bulk(repo, records, endpoint, types, since, marks, summary)
        for type_ in [] if bulk else types:
            await self._sync_type(repo, records, endpoint, type_, since or marks.get(type_),
                                  marks, summary)
        summary.watermarks = {t: marks[t] for t in types if t in marks}
        return summary

    async def _sync_type(self, repo: Repository, records: Records, endpoint: PayerEndpoint,
                         type_: str, since: str | None, marks: dict[str, str],
                         summary: Summary) -> None:
        base = endpoint.address.rstrip("/")
        query = {"_sort": "_lastUpdated", "_count": str(self.settings.fhir_ehr_page_size)}
        if since:
            query["_lastUpdated"] = f"ge{since}"
        url: str | None = f"{base}/{type_}?{urlencode(query)}"
        summary.counts.setdefault(type_, dict.fromkeys(OUTCOMES, 0))
        while url:
            page = await self._page(endpoint, url)
            found = [e["resource"] for e in page.get("entry") or []
                     if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                     and e["resource"].get("resourceType") == type_
                     and (e.get("search") or {}).get("mode", "match") == "match"]
            if found:
                await self._store(repo, base, type_, found, summary)
                stamps = [str((r.get("meta") or {}).get("lastUpdated", "")) for r in found]
                if all(stamps) and stamps == sorted(stamps):
                    marks[type_] = stamps[-1]
                    await records.put(endpoint.reference, {"watermarks": marks,
                                                           "address": endpoint.address})
            url = _next(page, base, endpoint)

    async def _bulk(self, repo: Repository, records: Records, endpoint: PayerEndpoint,
                    types: list[str], since: str | None, marks: dict[str, str],
                    summary: Summary) -> None:
        """Bulk Data: kick off ``$export`` (``_since``: the oldest watermark of the types,
        none if one has none), poll its ``Content-Location``, then store each NDJSON file in
        pages; the watermarks become the export's ``transactionTime`` once all is stored."""
        base = endpoint.address.rstrip("/")
        starts = [since or marks.get(t) for t in types]
        query = {"_type": ",".join(types)}
        if all(starts):
            query["_since"] = min(str(s) for s in starts)
        kick = await self.http.request(endpoint, "GET", f"{base}/$export?{urlencode(query)}",
                                       idempotent=True, headers={"Prefer": "respond-async"})
        status_url = kick.headers.get("content-location", "")
        if kick.status_code != 202 or not status_url.startswith(base + "/"):
            raise _failed(endpoint, f"bulk export not started (HTTP {kick.status_code})")
        manifest = await self._manifest(endpoint, status_url)
        for type_ in types:
            summary.counts.setdefault(type_, dict.fromkeys(OUTCOMES, 0))
            for item in manifest.get("output") or []:
                if not isinstance(item, dict) or item.get("type") != type_:
                    continue
                url = str(item.get("url", ""))
                if not url.startswith(base + "/"):
                    # The token is not sent elsewhere.
                    raise _failed(endpoint, "an export file is not on the EHR's address")
                found = await self._ndjson(endpoint, url, type_)
                size = self.settings.fhir_ehr_page_size
                for start in range(0, len(found), size):
                    await self._store(repo, base, type_, found[start:start + size], summary)
        for type_ in types:
            marks[type_] = str(manifest["transactionTime"])
        await records.put(endpoint.reference, {"watermarks": marks, "address": endpoint.address})
        await self.http.request(endpoint, "DELETE", status_url, idempotent=True)

    async def _manifest(self, endpoint: PayerEndpoint, status_url: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BULK_WAIT
        while True:
            r = await self.http.request(endpoint, "GET", status_url, idempotent=True)
            if r.status_code == 200:
                manifest = self._json(endpoint, r.content, "export manifest")
                if not isinstance(manifest, dict) or not manifest.get("transactionTime"):
                    raise _failed(endpoint, "no export manifest")
                return manifest
            if r.status_code != 202:
                raise _failed(endpoint, f"export status answered HTTP {r.status_code}")
            if loop.time() > deadline:
                raise UpstreamTimeout(f"The EHR at {endpoint.reference} did not finish its "
                                      f"export within {BULK_WAIT:g} s")
            retry = r.headers.get("retry-after", "1")
            await asyncio.sleep(min(float(retry) if retry.isdigit() else 1.0, 10.0))

    async def _ndjson(self, endpoint: PayerEndpoint, url: str, type_: str
                      ) -> list[dict[str, Any]]:
        r = await self.http.request(endpoint, "GET", url, idempotent=True,
                                    headers={"Accept": "application/fhir+ndjson"},
                                    max_bytes=self.settings.fhir_max_bundle_bytes)
        if r.status_code != 200:
            raise _failed(endpoint, f"export file answered HTTP {r.status_code}")
        out = []
        for n, line in enumerate(r.content.splitlines(), 1):
            if not line.strip():
                continue
            resource = self._json(endpoint, line, f"line {n} of the {type_} export file")
            if not isinstance(resource, dict) or resource.get("resourceType") != type_:
                raise _failed(endpoint, f"line {n} of the {type_} export file is not a {type_}")
            out.append(resource)
        return out

    async def _page(self, endpoint: PayerEndpoint, url: str) -> dict[str, Any]:
        response = await self.http.request(endpoint, "GET", url, idempotent=True,
                                           max_bytes=self.settings.fhir_max_bundle_bytes)
        if response.status_code != 200:
            raise _failed(endpoint, f"search answered HTTP {response.status_code}")
        page = self._json(endpoint, response.content, "search answer")
        if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            raise _failed(endpoint, "search answered without a Bundle")
        return page

    def _json(self, endpoint: PayerEndpoint, body: bytes, what: str) -> Any:
        """The EHR's JSON (bad JSON is the EHR's failure, not the caller's bad request)."""
        try:
            return parse_json(body, what=what, max_depth=self.settings.fhir_max_json_depth,
                              max_string=self.settings.fhir_max_string_bytes)
        except Invalid as error:
            raise _failed(endpoint, f"{what} is not valid JSON ({error.code})") from None

    async def _store(self, repo: Repository, base: str, type_: str,
                     found: list[dict[str, Any]], summary: Summary) -> None:
        wanted = await self._wanted(repo, base, type_, found)
        try:
            await apply(repo, self.settings, wanted)
        except WriteFailed:
            # One refused resource must not hold back the page: each on its own.
            for one in await self._singly(repo, base, type_, found):
                summary.add(type_, one)
            return
        for w in wanted:
            summary.add(type_, w.outcome)

    async def _singly(self, repo: Repository, base: str, type_: str,
                      found: list[dict[str, Any]]) -> list[str]:
        outcomes = []
        for resource in found:
            wanted = await self._wanted(repo, base, type_, [resource])
            try:
                await apply(repo, self.settings, wanted)
                outcomes.append(wanted[0].outcome)
            except WriteFailed as failed:
                log.info("ehr sync resource refused type=%s id=%s status=%d", type_,
                         str(resource.get("id"))[:64], failed.error.status)
                outcomes.append("failed")
        return outcomes

    async def _wanted(self, repo: Repository, base: str, type_: str,
                      found: list[dict[str, Any]]) -> list[Wanted]:
        """The page's resources as this server stores them, references rewritten."""
        referenced: dict[str, set[str]] = {}
        for resource in found:
            _collect(resource, base, referenced)
        local: dict[str, str] = {}
        for target_type, ids in referenced.items():
            if target_type in SYNC_TYPES:
                hits = await lookup(repo, self.settings, target_type, [(base, i) for i in ids])
                local.update({f"{target_type}/{pair[1]}": f"{target_type}/{hit.id_}"
                              for pair, hit in hits.items()})
        page_keys = {f"{type_}/{r.get('id')}" for r in found}
        out = []
        for resource in found:
            ehr_id = str(resource.get("id", ""))
            body = {k: v for k, v in resource.items() if k not in ("id", "meta", "resourceType")}
            body = _rewrite(body, base, local, page_keys)
            body["identifier"] = [*(body.get("identifier") or []),
                                  {"system": base, "value": ehr_id}]
            out.append(Wanted(key=f"{type_}/{ehr_id}", type_=type_, match=[(base, ehr_id)],
                              content=body, merge=False, source=f"{type_}/{ehr_id}"))
        return out


def _relative(reference: str, base: str) -> str | None:
    ref = reference[len(base) + 1:] if reference.startswith(base + "/") else reference
    parts = ref.split("/")
    if len(parts) in (2, 4) and parts[0][:1].isupper() and "?" not in ref:
        return f"{parts[0]}/{parts[1]}"
    return None


def _collect(value: Any, base: str, out: dict[str, set[str]]) -> None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and (rel := _relative(ref, base)):
            type_, id_ = rel.split("/")
            out.setdefault(type_, set()).add(id_)
        for key, item in value.items():
            if key != "contained":
                _collect(item, base, out)
    elif isinstance(value, list):
        for item in value:
            _collect(item, base, out)


def _rewrite(value: Any, base: str, local: dict[str, str], page: set[str]) -> Any:
    """References to resources synced here point at them (those of the same page at
    ``urn:wanted:``); others keep a logical identifier (system: the EHR's base URL)."""
    if isinstance(value, dict):
        out = {k: (v if k == "contained" else _rewrite(v, base, local, page))
               for k, v in value.items()}
        ref = out.get("reference")
        rel = _relative(ref, base) if isinstance(ref, str) else None
        if rel is not None:
            if rel in page:
                out["reference"] = f"urn:wanted:{rel}"
            elif rel in local:
                out["reference"] = local[rel]
            else:
                del out["reference"]
                out.setdefault("type", rel.split("/")[0])
                out.setdefault("identifier", {"system": base, "value": rel.split("/")[1]})
        return out
    if isinstance(value, list):
        return [_rewrite(v, base, local, page) for v in value]
    return value


def _next(page: dict[str, Any], base: str, endpoint: PayerEndpoint) -> str | None:
    for link in page.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url.startswith(base + "/"):
                return url
            if isinstance(url, str):  # the sync stops there: the token is not sent elsewhere
                raise _failed(endpoint, "a next link leaves the EHR's address")
    return None


def _failed(endpoint: PayerEndpoint, detail: str) -> Upstream:
    return unreachable("EHR", endpoint.reference, detail)
