"""The labels a request is counted under (``metrics.RequestLabels``): only the values the
server was told at start-up, anything else ``other``."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from fhir_server.api.context import RequestContext
from fhir_server.auth.classify import classify
from fhir_server.core.models import resource_types
from fhir_server.observability.metrics import NONE, OTHER, RequestLabels

LABELS = RequestLabels(resource_types=frozenset({"Patient", "Claim"}),
                       operations=frozenset({"$submit"}))


@pytest.mark.parametrize(("method", "path", "bundle_type", "expected"), [
    ("GET", "Patient/1", None, ("read", "Patient")),
    ("GET", "Observation/1", None, ("read", OTHER)),  # a type it was not told of
    ("GET", "Nonsense/1", None, ("read", OTHER)),
    ("POST", "Claim/$submit", None, ("$submit", "Claim")),
    ("POST", "Claim/$made-up", None, (OTHER, "Claim")),
    ("POST", "", "transaction", ("transaction", NONE)),
    ("POST", "", "collection", ("transaction-or-batch", NONE)),
])
def test_labels_are_the_told_values_or_other(method: str, path: str, bundle_type: str | None,
                                             expected: tuple[str, str]) -> None:
    assert LABELS.of(classify(method, path), bundle_type) == expected


def test_a_request_that_is_not_fhir_has_no_labels() -> None:
    assert LABELS.of(None, None) == (NONE, NONE)


def test_main_tells_the_served_types_and_defined_operations(app: FastAPI) -> None:
    [context] = [m for m in app.user_middleware if m.cls is RequestContext]
    labels = context.kwargs["labels"]
    assert labels.resource_types == frozenset(resource_types())
    assert {"$submit", "$expand", "$sync"} <= labels.operations
