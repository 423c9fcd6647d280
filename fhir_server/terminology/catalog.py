"""Finding the terminology resources a request names, and keeping the concept store current.

CodeSystem, ValueSet and ConceptMap resources are ordinary resources, found by
their canonical ``url`` (and ``version``) through the search engine. A code
system's concepts are served from the concept store (``storage/concepts.py``);
each stored build records the resource version it was made from
(``CodeSystem/id/_history/v``). Whenever a code system is used, its current
resource versions are compared with the stored builds (an indexed search and a
read per version, no parsing), and a resource written since, by any path (REST,
a transaction, another process), is indexed again before it is used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid, NotFound
from fhir_server.core.fhirjson import loads_stored
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.parse import criteria_of
from fhir_server.storage.concepts import SystemVersion
from fhir_server.storage.repository import Repository
from fhir_server.terminology.codesystem import concept_rows, indexable

log = logging.getLogger("fhir_server.terminology")

MAX_VERSIONS = 50  # resources of one canonical URL considered
# How long the ids found for a canonical url are trusted before searching again. A known
# resource's change or deletion is seen at once (it is read by id every time); a new
# resource with a url already in use may take this long to be noticed.
DISCOVERY_SECONDS = 5.0
_found: dict[tuple[int, str, str], tuple[float, list[str]]] = {}


def split_canonical(value: str) -> tuple[str, str | None]:
    """``url|version`` -> (url, version)."""
    url, bar, version = value.partition("|")
    return url, (version or None) if bar else None


def source_of(id_: str, version: int) -> str:
    return f"CodeSystem/{id_}/_history/{version}"


@dataclass
class Catalog:
    """The terminology resources of one repository, for one request (results are kept)."""

    repo: Repository
    settings: Settings
    _systems: dict[tuple[str, str | None], SystemVersion | None] = field(default_factory=dict)
    _searched: set[tuple[str, str]] = field(default_factory=set)  # urls searched afresh

    async def ids(self, type_: str, criteria: list[tuple[str, str]]) -> list[str]:
        query = compile_criteria(CompileContext(base_url=self.settings.base_url), type_,
                                 criteria_of(criteria))
        return await self.repo.search(type_=type_, query=query, sort=(), limit=MAX_VERSIONS)

    async def url_ids(self, type_: str, url: str, *, fresh: bool = False) -> list[str]:
        """Ids of the resources with this canonical url: searched, then kept for
        ``DISCOVERY_SECONDS`` per process (a search by url is an index read on SQLite and
        MongoDB, but a scan of every resource of the type on FerretDB)."""
        key = (id(self.repo.records), type_, url)
        found = _found.get(key)
        if (type_, url) in self._searched:
            fresh = False  # this request has searched already
        if fresh or found is None or time.monotonic() - found[0] > DISCOVERY_SECONDS:
            ids = await self.ids(type_, [("url", url)])
            _found[key] = (time.monotonic(), ids)
            self._searched.add((type_, url))
            return ids
        return found[1]

    async def read(self, type_: str, id_: str) -> dict[str, Any]:
        stored = await self.repo.current(type_=type_, id_=id_)
        if stored is None or stored.text is None:
            raise NotFound(f"{type_}/{id_} is not known")
        resource: dict[str, Any] = loads_stored(stored.text)
        return resource

    async def by_url(self, type_: str, canonical: str) -> dict[str, Any] | None:
        """The resource with this canonical URL (``url|version``); the highest version when
        several match and none is named."""
        url, version = split_canonical(canonical)
        found = await self._with_url(type_, url, version)
        if not found and (type_, url) not in self._searched:  # written since it was searched?
            found = await self._with_url(type_, url, version, fresh=True)
        if not found:
            return None
        found.sort(key=lambda r: (str(r.get("version") or ""), str(r.get("id"))), reverse=True)
        return found[0]

    async def _with_url(self, type_: str, url: str, version: str | None, *,
                        fresh: bool = False) -> list[dict[str, Any]]:
        out = []
        for id_ in await self.url_ids(type_, url, fresh=fresh):
            stored = await self.repo.current(type_=type_, id_=id_)
            if stored is None or stored.text is None:
                continue
            resource: dict[str, Any] = loads_stored(stored.text)
            if resource.get("url") == url and (version is None
                                               or resource.get("version") == version):
                out.append(resource)
        return out

    async def must_find(self, type_: str, canonical: str, name: str) -> dict[str, Any]:
        found = await self.by_url(type_, canonical)
        if found is None:
            raise NotFound(f"No {type_} with the url '{canonical[:200]}' is known",
                           expression=[name])
        return found

    # -- code systems -------------------------------------------------------------------

    async def system(self, url: str, version: str | None = None) -> SystemVersion | None:
        """The stored concepts of a code system (the given version, else the highest), made
        current first; None when no CodeSystem of this url has concepts here."""
        if (url, version) not in self._systems:
            self._systems[(url, version)] = await self._current(url, version)
        return self._systems[(url, version)]

    async def must_have_system(self, url: str, version: str | None, name: str) -> SystemVersion:
        found = await self.system(url, version)
        if found is None:
            label = f"{url}|{version}" if version else url
            raise NotFound(f"The code system '{label[:200]}' is not known to this server",
                           expression=[name])
        return found

    async def _current(self, url: str, version: str | None) -> SystemVersion | None:
        stored = {s.source: s for s in await self.repo.concepts.versions(url=url)}
        serving, changed = await self._serving(await self.url_ids("CodeSystem", url), stored)
        if (changed or not serving) and ("CodeSystem", url) not in self._searched:
            # a resource changed or went since its url was searched: search again
            serving, _ = await self._serving(await self.url_ids("CodeSystem", url, fresh=True),
                                             stored)
        serving = [s for s in serving if s.url == url]
        if version is not None:
            serving = [s for s in serving if s.version == version]
        if not serving:
            return None
        return max(serving, key=lambda s: s.version)

    async def _serving(self, ids: list[str], stored: dict[str, SystemVersion]
                       ) -> tuple[list[SystemVersion], bool]:
        """The stored builds of these resources (built when missing), and whether any of
        them was not current."""
        serving: list[SystemVersion] = []
        changed = False
        for id_ in ids:
            current = await self.repo.peek(type_="CodeSystem", id_=id_)
            if current is None or current.deleted:
                changed = True
                continue
            source = source_of(id_, current.version)
            if source in stored:
                serving.append(stored[source])
                continue
            changed = True
            built = await self._build(id_, source)
            if built is not None:
                stored[source] = built
                serving.append(built)
        return serving, changed

    async def _build(self, id_: str, source: str) -> SystemVersion | None:
        """Index a CodeSystem resource version that is not in the concept store yet."""
        resource = await self.read("CodeSystem", id_)
        url, version = str(resource.get("url") or ""), str(resource.get("version") or "")
        if not url:
            return None
        if not indexable(resource):
            # Concepts kept only in the store (ICD-10-CM): the same concepts serve the
            # resource's new version.
            existing = await self.repo.concepts.system(url=url, version=version)
            if existing is None:
                return None
            await self.repo.concepts.set_source(url=url, version=version, source=source)
            return SystemVersion(url=url, version=version, source=source,
                                 content=existing.content, count=existing.count,
                                 gen=existing.gen)
        rows = concept_rows(resource)
        log.info("indexing code system id=%s concepts=%d", id_, len(rows))
        return await self.repo.concepts.replace(
            system=SystemVersion(url=url, version=version, source=source,
                                 content=str(resource.get("content"))), concepts=rows)


def one_of(params: dict[str, list[Any]], *names: str) -> str | None:
    """The first of several alternative parameter names given; 400 when two are."""
    given = [n for n in names if params.get(n)]
    if len(given) > 1:
        raise Invalid(f"Give only one of {', '.join(names)}", expression=given)
    return given[0] if given else None
