"""A search, described once: what a resource's stored search values must satisfy.

The search layer (``values.py``, ``compile.py``) turns FHIR search parameters
into these nodes; each storage engine compiles them to its own dialect (a
MongoDB filter, or SQL over the SQLite index tables), and ``evaluate.py``
judges a single resource's values in Python. The nodes only speak of the
stored search values (``search/extract.py``): keys of the string kinds, and
elements of the range kinds. FHIR's rules (prefixes, precision, modifiers)
live where the nodes are made, never in an engine.

String kinds (``tk tt ot st sx rf ri ur cp has``) hold keys ``param|...``;
range kinds hold elements with fields:

* ``dt``: ``p``, ``lo``, ``hi`` (instants, ``hi`` exclusive)
* ``nm``: ``p``, ``v``
* ``qt``: ``p``, ``v``, ``s``, ``c``, ``u``
* ``cr``: ``p``, ``k``, and the ``dt`` or ``qt`` fields
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

STRING_KINDS = ("tk", "tt", "ot", "st", "sx", "rf", "ri", "ur", "cp", "has")
ELEMENT_KINDS = ("dt", "nm", "qt", "cr")
ELEMENT_FIELDS = {"dt": ("lo", "hi"), "nm": ("v",), "qt": ("v", "s", "c", "u"),
                  "cr": ("k", "lo", "hi", "v", "s", "c", "u")}

Op = Literal["eq", "lt", "le", "gt", "ge"]
Value = datetime | float | int | str


# -- conditions on one element of a range kind ----------------------------------------

@dataclass(frozen=True)
class Cmp:
    """``field op value`` on one element (a missing field never satisfies it)."""

    field: str
    op: Op
    value: Value


@dataclass(frozen=True)
class AllOf:
    conds: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    conds: tuple[Cond, ...]


Cond = Cmp | AllOf | AnyOf


# -- conditions on a resource ----------------------------------------------------------

@dataclass(frozen=True)
class Keys:
    """The resource has a value of ``kind`` among ``keys``."""

    kind: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class NoKeys:
    """The resource has no value of ``kind`` among ``keys`` (also when it has none at all)."""

    kind: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Prefix:
    """The resource has a value of ``kind`` that starts with ``prefix``."""

    kind: str
    prefix: str


@dataclass(frozen=True)
class Contains:
    """The resource has a value of ``kind`` that starts with ``prefix`` and holds ``text``
    after it."""

    kind: str
    prefix: str
    text: str


@dataclass(frozen=True)
class Element:
    """One element of ``kind`` for parameter ``param`` satisfies ``cond``."""

    kind: str
    param: str
    cond: Cond


@dataclass(frozen=True)
class Ids:
    """The resource's id is (``negate``: is not) among ``ids``."""

    ids: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Updated:
    """The version's instant (``meta.lastUpdated``) satisfies ``cond`` (field ``ts``)."""

    cond: Cond


@dataclass(frozen=True)
class Chain:
    """The resource refers through ``param`` (keys ``param|target/id``) to a ``target``
    resource matching ``inner``."""

    param: str
    target: str
    inner: Query


@dataclass(frozen=True)
class Has:
    """Some ``source`` resource matching ``inner`` refers to this resource through
    ``param`` (``_has:source:param:...``). ``type_`` is the type of this resource."""

    source: str
    param: str
    type_: str
    inner: Query


# -- codes from fhir_server.terminology: token modifiers :in, :not-in, :below, :above -------------------

@dataclass(frozen=True)
class ValueSetCodes:
    """The codes of a value set, by canonical url (``url|version``)."""

    url: str


@dataclass(frozen=True)
class HierarchyCodes:
    """A code of a code system and the codes below it (``below``) or above it."""

    system: str
    code: str
    below: bool


@dataclass(frozen=True)
class StoredSet:
    """A code set stored by the concept store (members ``system|code``)."""

    key: str


@dataclass(frozen=True)
class StoredHierarchy:
    """``HierarchyCodes`` in the concept store generations ``gens`` of ``system``."""

    system: str
    gens: tuple[str, ...]
    code: str
    below: bool


CodeSource = ValueSetCodes | HierarchyCodes | StoredSet | StoredHierarchy


@dataclass(frozen=True)
class KeysInSet:
    """The resource has (``negate``: has no) a token of ``param`` (kind ``tk``, keys
    ``param|system|code``) whose system and code are in ``source``. ``ValueSetCodes`` and
    ``HierarchyCodes`` name the codes; before a search runs they are made ``StoredSet`` and
    ``StoredHierarchy`` (``service/search/codes.py``), which SQLite joins and MongoDB resolves to
    keys (``storage/resolve.py``)."""

    kind: str
    param: str
    source: CodeSource
    negate: bool = False


@dataclass(frozen=True)
class And:
    parts: tuple[Query, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Query, ...]


Query = (Keys | NoKeys | Prefix | Contains | Element | Ids | Updated | Chain | Has | KeysInSet
         | And | Or)

EVERYTHING: Query = And(())
NOTHING: Query = Or(())


def and_(*parts: Query | None) -> Query:
    """The conjunction, flattened; ``EVERYTHING`` for none."""
    flat: list[Query] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, And):
            flat.extend(part.parts)
        else:
            flat.append(part)
    if any(p == NOTHING for p in flat):
        return NOTHING
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def or_(*parts: Query) -> Query:
    """The disjunction, flattened; ``NOTHING`` for none."""
    flat: list[Query] = []
    for part in parts:
        if isinstance(part, Or):
            flat.extend(part.parts)
        else:
            flat.append(part)
    if any(p == EVERYTHING for p in flat):
        return EVERYTHING
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def all_of(*conds: Cond) -> Cond:
    return conds[0] if len(conds) == 1 else AllOf(conds)


def any_of(*conds: Cond) -> Cond:
    return conds[0] if len(conds) == 1 else AnyOf(conds)


@dataclass(frozen=True)
class SortKey:
    """One sort criterion: ``_id``, ``_lastUpdated`` or a search parameter's code."""

    name: str
    descending: bool = False


def walk(query: Query) -> list[Query]:
    """Every node of a query, depth first (chains and _has included)."""
    out: list[Query] = [query]
    if isinstance(query, And | Or):
        for part in query.parts:
            out += walk(part)
    elif isinstance(query, Chain | Has):
        out += walk(query.inner)
    return out


def params_read(query: Query) -> frozenset[str] | None:
    """The codes of the search parameters whose values a query of one resource reads (its
    id and instant need none); None when it reaches beyond the resource (chains, ``_has``,
    code sets), whose values cannot be named from here."""
    codes: set[str] = set()
    for node in walk(query):
        if isinstance(node, Keys | NoKeys):
            codes.update(k.split("|", 1)[0] for k in node.keys)
        elif isinstance(node, Prefix | Contains):
            codes.add(node.prefix.split("|", 1)[0])
        elif isinstance(node, Element):
            codes.add(node.param)
        elif not isinstance(node, And | Or | Ids | Updated):
            return None
    return frozenset(codes)
