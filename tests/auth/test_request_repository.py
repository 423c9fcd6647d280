"""The repository a route is handed is the request's own: the caller's access bound over
the app's repository by ``enforce_request``, with a token and with FHIR_AUTH=off alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.responses import Response

from fhir_server.api.deps import RepoDep
from fhir_server.api.negotiation import json_response
from fhir_server.auth.enforce import enforce_request
from fhir_server.auth.scoped import ScopedRepository
from tests.factories import patient

PROBE = "http://testserver/repository-probe"


def probe(app: FastAPI) -> list[object]:
    """A route behind ``enforce_request`` that keeps the repository it is handed."""
    handed: list[object] = []

    async def route(repo: RepoDep) -> Response:
        handed.append(repo)
        return json_response({"resourceType": "Parameters"})

    app.add_api_route("/repository-probe", route, methods=["GET"],
                      dependencies=[Depends(enforce_request)])
    return handed


async def test_a_patient_token_gets_a_repository_bound_to_its_patient(
        app: FastAPI, client_for: Callable[..., Awaitable[httpx.AsyncClient]]) -> None:
    handed = probe(app)
    http = await client_for("patient/*.rs", patient="p-1")
    assert (await http.get(PROBE)).status_code == 200
    [repo] = handed
    assert isinstance(repo, ScopedRepository) and repo.base is app.state.repo
    assert repo.access.principal is not None and repo.access.principal.patient == "p-1"


async def test_each_request_gets_its_own(app: FastAPI, client: httpx.AsyncClient) -> None:
    handed = probe(app)
    for _ in range(2):
        assert (await client.get(PROBE)).status_code == 200
    first, second = handed
    assert first is not second and first.access is not second.access


@pytest.mark.parametrize("settings_overrides", [{"fhir_auth": "off"}])
async def test_without_auth_the_repository_is_still_the_requests(app: FastAPI) -> None:
    handed = probe(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(PROBE)).status_code == 200
        created = await http.post("http://testserver/fhir/Patient", json=patient())
    assert created.status_code == 201, created.text
    [repo] = handed
    assert isinstance(repo, ScopedRepository) and repo.access.principal is None
