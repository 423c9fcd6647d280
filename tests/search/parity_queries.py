"""Random search queries over the parity data set (``parity_data.py``), seeded.

Each query is what a client would send: ``Type?name[:modifier][.chain]=v1,v2&...``, with
values drawn from the data set's own search values (so that queries find something) or
made up (so that some find nothing), covering every parameter type the server supports
(string, token, reference, date, number, quantity, uri, composite), every modifier
(``:missing :not :text :of-type :in :not-in :below :above :exact :contains :identifier
:[Type]``), chains, ``_has``, ``_id`` (and ``:not``), ``_lastUpdated`` and every prefix
(``eq ne gt lt ge le sa eb ap``), ANDed across parameters and ORed across comma values,
some sorted and limited.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.parse import PREFIXES, criteria_of
from fhir_server.search.query import (
    And,
    Chain,
    Contains,
    Element,
    Has,
    Ids,
    Keys,
    KeysInSet,
    Or,
    Prefix,
    Query,
    SortKey,
    Updated,
)
from fhir_server.search.registry import SearchParam, lookup, params_for
from tests.search.parity_data import BASE, BODY, BODY_TREE, FIRST_TS, VALUE_SETS, Dataset

SEED = 4111
QUERIES = 2040  # what the parity test runs (at least 2,000), in 12 chunks
# (source type, reference parameter) -> the types it may refer to, for _has.
HAS_LINKS = (("Observation", "subject"), ("Observation", "patient"),
             ("Observation", "performer"), ("Observation", "encounter"),
             ("Observation", "has-member"), ("Encounter", "subject"),
             ("Encounter", "participant"), ("Encounter", "service-provider"),
             ("Patient", "general-practitioner"), ("Patient", "organization"),
             ("RiskAssessment", "subject"), ("Organization", "partof"))
TERMINOLOGY_PARAMS = ("code", "value-concept", "combo-code", "component-code", "method")
TYPES = ("Patient", "Observation", "Encounter", "Practitioner", "Organization",
         "RiskAssessment", "ValueSet")
TYPE_WEIGHTS = (5, 5, 4, 2, 2, 3, 2)


@dataclass(frozen=True)
class ParityQuery:
    """One search: its type, its query parameters, its sort and how many ids it asks for."""

    type_: str
    params: tuple[tuple[str, str], ...]
    sort: tuple[SortKey, ...] = ()
    limit: int = 10_000

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.params]
        if self.sort:
            parts.append("_sort=" + ",".join(("-" if k.descending else "") + k.name
                                             for k in self.sort))
        if self.limit < 10_000:
            parts.append(f"_count={self.limit}")
        return f"{self.type_}?{'&'.join(parts)}"


def narrows(query: Query) -> bool:
    """Whether some condition of the query could be read from an index (not only
    negations: ``:not``, ``:not-in``, ``:missing=true``, ``_id:not``)."""
    if isinstance(query, And):
        return any(narrows(q) for q in query.parts)
    if isinstance(query, Or):
        return bool(query.parts) and all(narrows(q) for q in query.parts)
    if isinstance(query, Ids | KeysInSet):
        return not query.negate
    return isinstance(query, Keys | Prefix | Contains | Element | Updated | Chain | Has)


def escape(value: str) -> str:
    """A search value with FHIR's escaped characters (``\\ , $ |``) escaped."""
    for ch in ("\\", ",", "$", "|"):
        value = value.replace(ch, "\\" + ch)
    return value


def _token_query(stored: str) -> str:
    """The query value that asks for a stored token key's ``system|code`` part."""
    system, _, code = stored.partition("|")
    if system == "*":
        return escape(code)
    return f"{escape(system)}|{escape(code)}"


class Generator:
    """Makes queries from the data set's values; one per ``query()`` call."""

    def __init__(self, data: Dataset, seed: int = SEED) -> None:
        self.data = data
        self.rng = random.Random(seed)
        self.values: dict[tuple[str, str, str], list[Any]] = {}
        for type_, found in data.index.items():
            for ix in found.values():
                for kind, vals in ix.items():
                    if kind == "so":
                        continue
                    for v in vals:
                        param = v["p"] if isinstance(v, dict) else v.split("|", 1)[0]
                        self.values.setdefault((type_, kind, param), []).append(v)

    # -- helpers ------------------------------------------------------------------------

    def pick(self, type_: str, kind: str, param: str) -> Any | None:
        found = self.values.get((type_, kind, param))
        return self.rng.choice(found) if found else None

    def prefix(self) -> str:
        p = self.rng.choice(PREFIXES)
        return "" if p == "eq" and self.rng.random() < 0.5 else p

    def case(self, text: str) -> str:
        return self.rng.choice((text, text.upper(), text.lower(), text.title()))

    def date_text(self, moment: datetime) -> str:
        """``moment`` written at a random precision (and zone)."""
        if moment.year < 1000 or moment.year >= 9999:  # an open end of a Period
            moment = self.some_date()
        r = self.rng.random()
        if r < 0.2:
            return f"{moment.year:04d}"
        if r < 0.35:
            return f"{moment.year:04d}-{moment.month:02d}"
        if r < 0.65:
            return moment.date().isoformat()
        if r < 0.8:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        if r < 0.9:
            return moment.strftime("%Y-%m-%dT%H:%M")
        return (moment + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")

    def some_date(self) -> datetime:
        return datetime(1930, 1, 1, tzinfo=UTC) + timedelta(days=self.rng.randrange(96 * 365))

    def number_text(self, value: float) -> str:
        places = self.rng.choice((0, 1, 2, 3))
        return f"{value:.{places}f}"

    # -- one value per parameter type ---------------------------------------------------------

    def token(self, type_: str, code: str, modifier: str | None) -> str:
        if modifier == "text":
            found = self.pick(type_, "tt", code)
            text = found.split("|", 1)[1] if found else "nothing here"
            return escape(self.case(text[:self.rng.randrange(1, len(text) + 1)]))
        if modifier == "of-type":
            found = self.pick(type_, "ot", code)
            if not found or self.rng.random() < 0.1:
                return "http://terminology.hl7.org/CodeSystem/v2-0203|MR|nobody"
            return "|".join(escape(p) for p in found.split("|", 1)[1].split("|", 2))
        if modifier in ("in", "not-in"):
            return self.rng.choice(sorted(VALUE_SETS))
        if modifier in ("below", "above"):
            return f"{BODY}|{self.rng.choice(sorted(BODY_TREE))}"
        found = self.pick(type_, "tk", code)
        if not found or self.rng.random() < 0.1:
            return self.rng.choice(("nope", "http://example.org|nope", "|final"))
        return _token_query(found.split("|", 1)[1])

    def string(self, type_: str, code: str, modifier: str | None) -> str:
        found = self.pick(type_, "sx", code)
        text = found.split("|", 1)[1] if found else "Nobody"
        if modifier == "exact":
            return escape(text if self.rng.random() < 0.7 else self.case(text))
        if modifier == "contains":
            start = self.rng.randrange(len(text))
            return escape(self.case(text[start:start + self.rng.randrange(1, 5)]))
        return escape(self.case(text[:self.rng.randrange(1, len(text) + 1)]))

    def uri(self, type_: str, code: str, modifier: str | None) -> str:
        found = self.pick(type_, "ur", code)
        url = found.split("|", 1)[1] if found else "http://example.org/fhir/ValueSet/none"
        if modifier == "below":
            return escape(url.rsplit("/", self.rng.choice((1, 2)))[0])
        if modifier == "above":
            return escape(url + self.rng.choice(("", "/more", "/more/deeper")))
        return escape(url)

    def reference(self, type_: str, param: SearchParam, modifier: str | None) -> str:
        if modifier == "identifier":
            found = self.pick(type_, "ri", param.code)
            return _token_query(found.split("|", 1)[1]) if found else "urn:x|none"
        found = self.pick(type_, "rf", param.code)
        ref = found.split("|", 1)[1] if found else f"{param.target[0]}/missing"
        id_ = ref.rpartition("/")[2]
        if modifier is not None:
            return id_
        return self.rng.choice((ref, ref, id_, f"{BASE}/{ref}" if "://" not in ref else ref))

    def date(self, type_: str, code: str) -> str:
        found = self.pick(type_, "dt", code)
        moment = found["lo"] if found and self.rng.random() < 0.8 else self.some_date()
        if found and self.rng.random() < 0.2 and found["hi"].year < 9999:
            moment = found["hi"] - timedelta(milliseconds=1)
        return self.prefix() + self.date_text(moment)

    def number(self, type_: str, code: str) -> str:
        found = self.pick(type_, "nm", code)
        value = found["v"] if found else self.rng.random()
        return self.prefix() + self.number_text(value)

    def quantity_of(self, found: dict[str, Any] | None) -> str:
        value = found["v"] if found else self.rng.randrange(200)
        text = self.prefix() + self.number_text(value)
        shape = self.rng.random()
        if found is None or shape < 0.35:
            return text
        if shape < 0.6 and found.get("s"):
            return f"{text}|{escape(found['s'])}|{escape(found.get('c') or '')}"
        if shape < 0.8 and (found.get("u") or found.get("c")):
            return f"{text}||{escape(found.get('u') or found.get('c') or '')}"
        return f"{text}|{escape(found.get('s') or 'http://unitsofmeasure.org')}|"

    def quantity(self, type_: str, code: str) -> str:
        return self.quantity_of(self.pick(type_, "qt", code))

    def composite(self, type_: str, param: SearchParam) -> str:
        second = param.components[1].type
        if second in ("quantity", "date"):
            found = self.pick(type_, "cr", param.code)
            if found is None:
                return f"nope${self.prefix()}1"
            first = _token_query(found["k"])
            if second == "quantity":
                return f"{first}${self.quantity_of(found)}"
            return f"{first}${self.prefix()}{self.date_text(found['lo'])}"
        found = self.pick(type_, "cp", param.code)
        if found is None:
            return "nope$nope"
        k1, _, k2 = found.split("|", 1)[1].partition("$")
        right = _token_query(k2) if param.components[1].type == "token" else escape(
            self.case(k2))
        return f"{_token_query(k1)}${right}"

    # -- criteria -----------------------------------------------------------------------------

    def present(self, type_: str) -> list[str]:
        """The parameters of the type that some resource has values of."""
        return sorted({p for (t, _, p) in self.values if t == type_} & set(params_for(type_)))

    def criterion(self, type_: str, depth: int = 0) -> tuple[str, str]:
        r = self.rng.random()
        if r < 0.04:
            ids = self.data.ids(type_)
            chosen = [self.rng.choice(ids) if ids and self.rng.random() < 0.8 else "zz-none"
                      for _ in range(self.rng.choice((1, 1, 2, 3)))]
            return ("_id:not" if self.rng.random() < 0.3 else "_id"), ",".join(chosen)
        if r < 0.08:
            at = FIRST_TS + timedelta(days=self.rng.randrange(-1, 7),
                                      minutes=self.rng.randrange(0, 60))
            return "_lastUpdated", self.prefix() + self.date_text(at)
        if r < 0.12 and depth < 2:
            return self.has(type_, depth)
        if r < 0.16:
            code = self.rng.choice(sorted(params_for(type_)))
            return f"{code}:missing", self.rng.choice(("true", "false"))
        code = self.rng.choice(self.present(type_))
        param = lookup(type_, code)
        assert param is not None
        if param.type == "reference" and depth < 2 and self.rng.random() < 0.3:
            return self.chain(type_, param, depth)
        name, make = self.value_maker(type_, param)
        count = self.rng.choice((1, 1, 1, 2, 3))
        return name, ",".join(make() for _ in range(count))

    def value_maker(self, type_: str, param: SearchParam) -> tuple[str, Callable[[], str]]:
        """The parameter's name with a random modifier, and what makes one of its values."""
        code, kind = param.code, param.type
        modifier: str | None = None
        if kind == "token":
            choices = [None, None, "not", "text"]
            if self.values.get((type_, "ot", code)):
                choices.append("of-type")
            if code in TERMINOLOGY_PARAMS:
                choices += ["in", "not-in", "below", "above"]
            modifier = self.rng.choice(choices)
            return self.named(code, modifier), lambda: self.token(type_, code, modifier)
        if kind == "string":
            modifier = self.rng.choice((None, None, "exact", "contains"))
            return self.named(code, modifier), lambda: self.string(type_, code, modifier)
        if kind == "uri":
            modifier = self.rng.choice((None, "below", "above"))
            return self.named(code, modifier), lambda: self.uri(type_, code, modifier)
        if kind == "reference":
            choices = [None, None, None]
            if self.values.get((type_, "ri", code)):
                choices.append("identifier")
            if param.target and self.values.get((type_, "rf", code)):
                choices.append("typed")
            modifier = self.rng.choice(choices)
            if modifier == "typed":
                found = self.pick(type_, "rf", code)
                target = found.split("|", 1)[1].rsplit("/", 1)[0] if found else param.target[0]
                if "/" in target:
                    target = param.target[0]
                return f"{code}:{target}", lambda: self.reference(type_, param, target)
            return self.named(code, modifier), lambda: self.reference(type_, param, modifier)
        if kind == "date":
            return code, lambda: self.date(type_, code)
        if kind == "number":
            return code, lambda: self.number(type_, code)
        if kind == "quantity":
            return code, lambda: self.quantity(type_, code)
        return code, lambda: self.composite(type_, param)

    @staticmethod
    def named(code: str, modifier: str | None) -> str:
        return code if modifier is None else f"{code}:{modifier}"

    def chain(self, type_: str, param: SearchParam, depth: int) -> tuple[str, str]:
        targets = [t for t in param.target if t in TYPES]
        if not targets:
            return param.code, self.reference(type_, param, None)
        target = self.rng.choice(targets)
        inner_name, inner_value = self.criterion(target, depth + 1)
        if inner_name.startswith("_has"):
            inner_name, inner_value = "_id", self.rng.choice(self.data.ids(target))
        typed = len(param.target) > 1 and self.rng.random() < 0.6
        return f"{param.code}{':' + target if typed else ''}.{inner_name}", inner_value

    def has(self, type_: str, depth: int) -> tuple[str, str]:
        links = [(s, p) for s, p in HAS_LINKS
                 if type_ in (lookup(s, p).target if lookup(s, p) else ())]  # type: ignore[union-attr]
        if not links:
            return "_id", self.rng.choice(self.data.ids(type_))
        source, ref = self.rng.choice(links)
        inner_name, inner_value = self.criterion(source, depth + 1)
        if inner_name.startswith("_has") or "." in inner_name:
            inner_name, inner_value = "_id", self.rng.choice(self.data.ids(source))
        return f"_has:{source}:{ref}:{inner_name}", inner_value

    # -- whole queries --------------------------------------------------------------------

    def sort(self, type_: str) -> tuple[SortKey, ...]:
        names = ["_id", "_lastUpdated", *[c for c in self.present(type_)
                                            if lookup(type_, c).type != "composite"]]  # type: ignore[union-attr]
        keys = self.rng.sample(names, self.rng.choice((1, 1, 2)))
        return tuple(SortKey(n, descending=self.rng.random() < 0.5) for n in keys)

    def query(self) -> ParityQuery:
        type_ = self.rng.choices(TYPES, weights=TYPE_WEIGHTS)[0]
        sorted_ = self.rng.random() < 0.25
        n = self.rng.choice((0, 1, 1, 2, 2, 3) if sorted_ else (1, 1, 1, 1, 2, 2, 2, 3))
        params = tuple(self.criterion(type_) for _ in range(n))
        sort: tuple[SortKey, ...] = ()
        limit = 10_000
        if sorted_:
            sort = self.sort(type_)
            if not narrows(compile_criteria(CompileContext(base_url=BASE), type_,
                                            criteria_of(list(params)))):
                # Nothing narrows (no condition, or only negations): MongoDB reads the whole
                # collection, in the order of an index when the sort has one (dates, _id,
                # _lastUpdated; see tests/storage/test_mongo_index_use.py), else sorting it
                # all. The parity set sorts such searches only by what an index orders.
                sort = tuple(k for k in sort if k.name in ("_id", "_lastUpdated")
                             or lookup(type_, k.name).type == "date")  # type: ignore[union-attr]
            if sort and self.rng.random() < 0.5:  # a page: only of a defined order
                limit = self.rng.randrange(1, 25)
        return ParityQuery(type_, params, sort, limit)


def parity_queries(data: Dataset, count: int, seed: int = SEED) -> list[ParityQuery]:
    gen = Generator(data, seed)
    return [gen.query() for _ in range(count)]
