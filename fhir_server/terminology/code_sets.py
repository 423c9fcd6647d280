"""Value sets and hierarchies as stored code sets, for the token modifiers of search.

``:in``/``:not-in`` name a value set by url (or ``ValueSet/id``): its plan
(``compose.py``, the rule ``$expand`` uses) is stored in full in the concept
store under a key that is a digest of the plan (the code systems' generations,
the conditions, the listed codes), so an edit of the value set or a rebuild of
a code system makes a new set and an unchanged one is reused. Any size: the
members are joined on (SQLite) or read as keys (MongoDB), never cut off.
``:below``/``:above`` name a code of a code system: its current generation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from fhir_server.core.config import Settings
from fhir_server.core.errors import FhirError, Invalid
from fhir_server.core.models import ID_RE
from fhir_server.search.query import (
    CodeSource,
    HierarchyCodes,
    StoredHierarchy,
    StoredSet,
    ValueSetCodes,
)
from fhir_server.storage.repository import Repository
from fhir_server.terminology.catalog import Catalog
from fhir_server.terminology.compose import Plan, plan_of
from fhir_server.terminology.time_bound import expansion_time

HEADS = "code_set_heads"  # records kind: {_id: value set url, key}


def plan_key(plan: Plan) -> str:
    text = repr(([(p.system.url, p.system.version, p.system.gen, p.where) for p in plan.parts],
                 [(c.system, c.code) for c in plan.listed]))
    return "vs-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CodeSets:
    repo: Repository
    settings: Settings
    catalog: Catalog = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog(repo=self.repo, settings=self.settings)

    async def stored(self, param: str, source: CodeSource) -> CodeSource:
        if isinstance(source, HierarchyCodes):
            system = await self.catalog.system(source.system)
            if system is None:
                raise Invalid(f"The code system '{source.system[:200]}' is not known to this "
                              f"server, so '{param}' cannot be searched by its hierarchy",
                              expression=[param], code="not-found")
            return StoredHierarchy(source.system, (system.gen,), source.code, source.below)
        if isinstance(source, ValueSetCodes):
            return StoredSet(await self._set(param, source.url))
        return source

    async def _set(self, param: str, url: str) -> str:
        kind, _, id_ = url.partition("/")
        if kind == "ValueSet" and ID_RE.match(id_):
            value_set = await self.catalog.read("ValueSet", id_) if await self.repo.exists(
                type_="ValueSet", id_=id_) else None
        else:
            value_set = await self.catalog.by_url("ValueSet", url)
        if value_set is None:
            raise Invalid(f"The value set '{url[:200]}' is not known to this server",
                          expression=[param], code="not-found")
        try:
            plan = await plan_of(self.catalog, value_set)
        except FhirError as error:  # a value set that cannot be expanded: the search's fault
            raise Invalid(error.diagnostics, expression=[param], code=error.code) from None
        key = plan_key(plan)
        if not await self.repo.concepts.has_set(key=key):
            with expansion_time(self.settings, expression=[param]):
                await self.repo.concepts.store_set(
                    key=key, parts=plan.parts,
                    listed=[f"{c.system}|{c.code}" for c in plan.listed])
        await self._remember(str(value_set.get("url") or url), key)
        return key

    async def _remember(self, url: str, key: str) -> None:
        """Keep one stored set per value set url: the one made last."""
        head = await self.repo.records.get(kind=HEADS, id_=url)
        if head is not None and head.get("key") == key:
            return
        await self.repo.records.delete(kind=HEADS, id_=url)
        await self.repo.records.insert(kind=HEADS, doc={"_id": url, "key": key})
        if head is not None and head.get("key"):
            await self.repo.concepts.drop_set(key=str(head["key"]))
