"""``_include`` and ``_revinclude`` (with ``:iterate``), resolved after the page is fetched."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fhir_server.core.errors import Invalid
from fhir_server.core.models import resource_class
from fhir_server.search.extract import reference_type
from fhir_server.search.normalize import key
from fhir_server.search.query import Keys, SortKey
from fhir_server.search.registry import lookup, params_for
from fhir_server.storage.model import StoredVersion
from fhir_server.storage.repository import Repository

MAX_INCLUDED = 1000
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Include:
    source: str | None  # None for '*' (every type)
    param: str | None  # None for '*' (every reference parameter)
    target: str | None
    iterate: bool

    def params(self, type_: str) -> list[str]:
        if self.param is not None:
            return [self.param]
        return [c for c, p in params_for(type_).items() if p.type == "reference"]


def _parse_one(name: str, value: str, base_type: str) -> Include:
    iterate = name.endswith((":iterate", ":recurse"))
    if value == "*":
        return Include(source=None, param=None, target=None, iterate=iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or resource_class(parts[0]) is None:
        raise Invalid(f"{name} takes Type:parameter[:targetType], not '{value[:64]}'",
                      expression=[name])
    source, param = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if param != "*":
        found = lookup(source, param)
        if found is None or found.type != "reference":
            raise Invalid(f"'{param}' is not a reference parameter of {source}",
                          expression=[name])
    if target is not None and resource_class(target) is None:
        raise Invalid(f"'{target}' is not a resource type", expression=[name])
    return Include(source=source, param=None if param == "*" else param, target=target,
                   iterate=iterate)


def parse_includes(params: list[tuple[str, str]], name: str, base_type: str) -> list[Include]:
    return [_parse_one(k, v, base_type) for k, v in params
            if k == name or k.startswith(name + ":")]


async def _forward(repo: Repository, current: list[StoredVersion], inc: Include,
                   seen: set[str]) -> list[StoredVersion]:
    by_type: dict[str, list[str]] = defaultdict(list)
    for stored in current:
        if inc.source is None or stored.type_ == inc.source:
            by_type[stored.type_].append(stored.id_)
    wanted: dict[str, list[str]] = defaultdict(list)
    for type_, ids in by_type.items():
        prefixes = tuple(key(p, "") for p in inc.params(type_))
        for refs in (await repo.references(type_=type_, ids=ids)).values():
            for ref in refs:
                if not ref.startswith(prefixes):
                    continue
                target = ref.split("|", 1)[1]
                rtype = reference_type(target)
                if rtype is None or (inc.target and rtype != inc.target) or target in seen:
                    continue
                if "/" in target and not target.startswith(("http:", "https:", "urn:")):
                    wanted[rtype].append(target.split("/", 1)[1])
    out = []
    for rtype, ids in wanted.items():
        if resource_class(rtype) is None:
            continue
        out += await repo.fetch(type_=rtype, ids=sorted(set(ids)))
    return out


async def _reverse(repo: Repository, current: list[StoredVersion],
                   inc: Include) -> list[StoredVersion]:
    if inc.source is None:
        return []
    targets = [s.reference for s in current if inc.target in (None, s.type_)]
    keys = tuple(key(p, t) for p in inc.params(inc.source) for t in targets)
    if not keys:
        return []
    ids = await repo.search(type_=inc.source, query=Keys("rf", keys), sort=(SortKey("_id"),),
                            limit=MAX_INCLUDED)
    return await repo.fetch(type_=inc.source, ids=ids)


async def resolve_includes(*, repo: Repository, matches: list[StoredVersion],
                           includes: list[Include], revincludes: list[Include]
                           ) -> list[StoredVersion]:
    seen = {s.reference for s in matches}
    included: list[StoredVersion] = []
    current = matches
    for round_ in range(MAX_ROUNDS):
        found: list[StoredVersion] = []
        for inc in includes:
            if round_ == 0 or inc.iterate:
                found += await _forward(repo, current, inc, seen)
        for inc in revincludes:
            if round_ == 0 or inc.iterate:
                found += await _reverse(repo, current, inc)
        fresh = []
        for stored in found:
            if stored.reference not in seen and len(included) < MAX_INCLUDED:
                seen.add(stored.reference)
                included.append(stored)
                fresh.append(stored)
        if not fresh or not any(i.iterate for i in (*includes, *revincludes)):
            break
        current = fresh
    return included
