"""A Subscription's ``criteria`` (``Type?search-params``), read and judged with the server's
own search semantics.

The criteria are parsed and compiled by the search parser and compiler
(``search/parse.py``, ``search/compile.py``) when the Subscription is written, and each
event's version is judged by the query model's evaluator (``search/evaluate.py``) on the
search values extracted from that version (``search/extract.py``): the same rules as a
search, written once. What the evaluator cannot judge without the database (chains,
``_has``, value sets and hierarchies: ``:in``, ``:not-in``, ``:below``, ``:above``) is
refused when the Subscription is written rather than judged wrongly later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.core.errors import Invalid, Unprocessable
from fhir_server.core.models import resource_class
from fhir_server.search.compile import CompileContext, compile_criteria
from fhir_server.search.evaluate import evaluate
from fhir_server.search.extract import index_resource
from fhir_server.search.parse import RESULT_PARAMETERS, criteria_of
from fhir_server.search.query import Chain, Has, KeysInSet, Query, params_read, walk

WHERE = "Subscription.criteria"


@dataclass(frozen=True)
class Criteria:
    text: str
    type_: str
    query: Query

    @property
    def reads(self) -> frozenset[str] | None:
        """The search parameters whose values judging a version takes (None: all)."""
        return params_read(self.query)


def parse_criteria(text: Any, *, base_url: str) -> Criteria:
    """The criteria compiled (Unprocessable naming ``Subscription.criteria`` when the server
    cannot evaluate them on a single version)."""
    if not isinstance(text, str) or not text.strip():
        raise Unprocessable("Subscription.criteria is required: Type?search-parameters",
                            expression=[WHERE])
    type_, _, query_string = text.strip().partition("?")
    if resource_class(type_) is None:
        raise Unprocessable(f"Subscription.criteria names no resource type this server "
                            f"serves: '{type_[:64]}'", expression=[WHERE])
    params = parse_qsl(query_string, keep_blank_values=True)
    result = sorted({k for k, _ in params if k.split(":", 1)[0] in RESULT_PARAMETERS})
    if result:
        raise Unprocessable(f"Subscription.criteria takes search parameters only, not "
                            f"{', '.join(result)}", expression=[WHERE])
    try:
        query = compile_criteria(CompileContext(base_url=base_url), type_,
                                 criteria_of(params), record=False)
    except Invalid as error:
        raise Unprocessable(f"Subscription.criteria cannot be evaluated: {error.diagnostics}",
                            expression=[WHERE]) from None
    needs = [n for n in walk(query) if isinstance(n, Chain | Has | KeysInSet)]
    if needs:
        raise Unprocessable("Subscription.criteria may not use chained parameters, _has, or "
                            ":in/:not-in/:below/:above: they need the database, and each "
                            "change is judged on its own version", expression=[WHERE])
    return Criteria(text=text.strip(), type_=type_, query=query)


def index_of(resource: Mapping[str, Any], *, id_: str, base_url: str,
             only: frozenset[str] | None = None) -> dict[str, Any]:
    """The search values of a version's content (versions keep none: extracted again);
    ``only``: those of the parameters named (``Criteria.reads``)."""
    return index_resource({**resource, "id": id_}, base_url=base_url, only=only)


def matches(criteria: Criteria, *, type_: str, id_: str, index: Mapping[str, Any],
            ts: datetime | None) -> bool:
    """Whether a version of ``type_/id_`` with search values ``index`` meets the criteria."""
    return type_ == criteria.type_ and evaluate(criteria.query, id_=id_, index=index, ts=ts)
