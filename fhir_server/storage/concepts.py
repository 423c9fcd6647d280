"""The concept store: every concept of every code system version as its own row or document.

A code system's concepts are stored beside the resources, one row (SQLite) or
document (MongoDB) each, with its ancestors (SQLite: a closure table; MongoDB:
an indexed array), its properties as ``name|value`` keys, and the words of its
display and designations. So a lookup is one read by key, and every filter of
a value set (``is-a``, ``=``, ``in``, ``exists``, words of a text filter) is an
index read, whatever the size of the system. The terminology service
(``fhir_server/terminology/``) decides what to store and asks with ``Select`` nodes; each
engine compiles them.

Each build of a code system version gets a new generation key (``gen``); the
system's entry points at the generation it serves, so a rebuild is written
beside the old one and replaces it at once (readers never see half a build).

Code sets are stored lists of ``system|code`` (a value set expanded for the
token modifiers ``:in`` and ``:not-in``), read by the search engines through
joins (SQLite) or as keys (MongoDB).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_server.search.normalize import fold

_WORD = re.compile(r"[^\W_]+")


def words_of(*texts: str | None) -> set[str]:
    """The words a text filter matches against: folded, split on what is not a letter or
    digit. Every engine stores these, so they all match the same."""
    out: set[str] = set()
    for text in texts:
        if text:
            out.update(_WORD.findall(fold(text)))
    return out


def filter_words(text: str) -> list[str]:
    """The words of a text filter, each to be a prefix of some word of a concept."""
    return sorted(words_of(text))


# -- what is stored --------------------------------------------------------------------

@dataclass(frozen=True)
class ConceptRow:
    """One concept of a code system version, as stored."""

    code: str
    display: str | None = None
    definition: str | None = None
    parents: tuple[str, ...] = ()
    ancestors: tuple[str, ...] = ()  # every concept it is below (not itself)
    active: bool = True
    abstract: bool = False
    designations: tuple[dict[str, Any], ...] = ()  # CodeSystem.concept.designation
    properties: tuple[dict[str, Any], ...] = ()  # CodeSystem.concept.property
    extra_words: tuple[str, ...] = ()  # more text a filter finds it by

    def property_keys(self) -> list[str]:
        """``name|value`` of each property (codings by code), and ``parent|code``."""
        out = [f"parent|{p}" for p in self.parents]
        for prop in self.properties:
            value = property_value(prop)
            if value is not None:
                out.append(f"{prop.get('code')}|{value}")
        return sorted(set(out))

    def words(self) -> list[str]:
        texts = [self.display, *(str(d.get("value") or "") for d in self.designations),
                 *self.extra_words]
        return sorted(words_of(*texts) | {fold(self.code)})

    def data(self) -> dict[str, Any]:
        """What is kept besides the indexed fields (JSON)."""
        out: dict[str, Any] = {}
        if self.definition:
            out["definition"] = self.definition
        if self.parents:
            out["parents"] = list(self.parents)
        if self.designations:
            out["designation"] = list(self.designations)
        if self.properties:
            out["property"] = list(self.properties)
        return out


def property_value(prop: dict[str, Any]) -> str | None:
    """A property's value as text: a code, string, boolean, number, or a Coding's code."""
    for key, value in prop.items():
        if not key.startswith("value"):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return str(value.get("code")) if value.get("code") is not None else None
        return str(value)
    return None


def concept_from(code: str, display: str | None, active: bool, abstract: bool,
                 data: dict[str, Any]) -> ConceptRow:
    """A stored concept read back (without its ancestors and words)."""
    return ConceptRow(code=code, display=display, definition=data.get("definition"),
                      parents=tuple(data.get("parents") or ()), active=active,
                      abstract=abstract, designations=tuple(data.get("designation") or ()),
                      properties=tuple(data.get("property") or ()))


@dataclass(frozen=True)
class SystemVersion:
    """A code system version whose concepts are stored."""

    url: str
    version: str  # "" when the code system has no version
    source: str  # what it was built from ("CodeSystem/id/_history/3")
    content: str  # the CodeSystem's content mode (complete, fragment, example, not-present)
    count: int = 0
    gen: str = ""  # the generation of rows it serves (set by the store)

    @property
    def label(self) -> str:
        return f"{self.url}|{self.version}" if self.version else self.url


# -- what is asked: concepts of one system version that satisfy a condition -------------

@dataclass(frozen=True)
class Everything:
    pass


@dataclass(frozen=True)
class Codes:
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Below:
    """Below ``code`` in the hierarchy (``itself``: or that code)."""

    code: str
    itself: bool = True


@dataclass(frozen=True)
class Above:
    """Above ``code`` in the hierarchy, or that code."""

    code: str


@dataclass(frozen=True)
class Props:
    """A property ``name`` with one of ``values`` (``parent`` included)."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class HasProp:
    name: str


@dataclass(frozen=True)
class Regex:
    """``field`` (``code``, ``display`` or a property) matches the whole ``pattern`` (RE2
    syntax, checked before any query: ``storage/patterns.py``)."""

    field: str
    pattern: str


@dataclass(frozen=True)
class Words:
    """Each of ``prefixes`` starts some word of the display, a designation or the code."""

    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class Active:
    pass


@dataclass(frozen=True)
class Not:
    part: Select


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Select, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Select, ...]


Select = (Everything | Codes | Below | Above | Props | HasProp | Regex | Words | Active | Not
          | AllOf | AnyOf)


def all_of(*parts: Select) -> Select:
    flat = [p for p in parts if not isinstance(p, Everything)]
    return flat[0] if len(flat) == 1 else AllOf(tuple(flat)) if flat else Everything()


def any_of(*parts: Select) -> Select:
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


@dataclass(frozen=True)
class Part:
    """Concepts of one stored system version that satisfy ``where``."""

    system: SystemVersion
    where: Select = field(default_factory=Everything)


class Concepts(ABC):
    """The concept store of one database. Keyword-only arguments throughout."""

    # -- code system versions -----------------------------------------------------------

    @abstractmethod
    async def system(self, *, url: str, version: str) -> SystemVersion | None: ...

    @abstractmethod
    async def versions(self, *, url: str) -> list[SystemVersion]:
        """Every stored version of a code system."""

    @abstractmethod
    async def replace(self, *, system: SystemVersion, concepts: Sequence[ConceptRow]
                      ) -> SystemVersion:
        """Store a build of a system version (written beside the one served, then swapped
        in); the entry as stored."""

    @abstractmethod
    async def set_source(self, *, url: str, version: str, source: str) -> None:
        """Record that the stored concepts also stand for another resource version."""

    @abstractmethod
    async def drop(self, *, url: str, version: str) -> None: ...

    # -- concepts -----------------------------------------------------------------------

    @abstractmethod
    async def get(self, *, system: SystemVersion, codes: Sequence[str]) -> dict[str, ConceptRow]:
        """The stored concepts of these codes (one indexed read each at most)."""

    @abstractmethod
    async def children(self, *, system: SystemVersion, code: str) -> list[str]: ...

    @abstractmethod
    async def is_below(self, *, system: SystemVersion, code: str, ancestor: str) -> bool:
        """Whether ``code`` is ``ancestor`` or below it."""

    @abstractmethod
    async def count(self, *, part: Part) -> int: ...

    @abstractmethod
    async def select(self, *, part: Part, offset: int, limit: int) -> list[ConceptRow]:
        """Concepts of a part in the code system's order."""

    @abstractmethod
    async def codes(self, *, part: Part) -> list[str]:
        """Every code of a part (for storing a code set)."""

    # -- code sets (value sets expanded for search) ---------------------------------------

    @abstractmethod
    async def store_set(self, *, key: str, parts: Sequence[Part], listed: Sequence[str]) -> int:
        """Store the members (``system|code``) of a code set under ``key``: the codes of
        ``parts`` and ``listed``; how many."""

    @abstractmethod
    async def has_set(self, *, key: str) -> bool: ...

    @abstractmethod
    async def set_members(self, *, key: str) -> list[str]:
        """The ``system|code`` members of a stored code set."""

    @abstractmethod
    async def drop_set(self, *, key: str) -> None: ...

    @abstractmethod
    async def hierarchy(self, *, gens: Sequence[str], code: str, below: bool) -> list[str]:
        """The codes below (or above) ``code``, itself included, in these generations."""
