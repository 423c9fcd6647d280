"""Roles bound what a user's token does at request time, whatever scopes it carries."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.auth.roles import bound_scopes, role_letters
from tests.auth.world import FHIR_JSON, World, build
from tests.support.store import ClientFor

# type -> a minimal resource of it, to create
MINIMAL = {
    "Observation": lambda w: {"resourceType": "Observation", "status": "final",
                              "code": {"text": "x"},
                              "subject": {"reference": f"Patient/{w.patients['a']}"}},
    "Claim": lambda w: {"resourceType": "Claim", "status": "active", "use": "claim",
                        "type": {"text": "professional"}, "created": "2024-01-01",
                        "patient": {"reference": f"Patient/{w.patients['a']}"},
                        "provider": {"reference": f"Organization/{w.organization}"},
                        "priority": {"text": "normal"},
                        "insurance": [{"sequence": 1, "focal": True,
                                       "coverage": {"reference": "Coverage/x"}}]},
    "Patient": lambda w: {"resourceType": "Patient", "name": [{"family": "New"}]},
    "Organization": lambda w: {"resourceType": "Organization", "name": "Payer"},
    "Appointment": lambda w: {"resourceType": "Appointment", "status": "proposed",
                              "participant": [{"actor": {"reference":
                                                         f"Patient/{w.patients['a']}"},
                                               "status": "needs-action"}]},
}


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build(client)


@pytest.mark.parametrize("role", ["admin", "clinician", "front-desk", "billing"])
@pytest.mark.parametrize("type_", sorted(MINIMAL))
async def test_role_bounds_user_star_token(client_for: ClientFor, world: World, role: str,
                                          type_: str) -> None:
    # A token that claims user/*.cruds (as if issued before the role table narrowed it):
    # the role is re-checked on every request.
    http = await client_for("user/*.cruds", username=f"u-{role}", role=role)
    letters = role_letters(role, type_)
    search = await http.get(type_)
    assert search.status_code == (200 if "s" in letters else 403), (role, type_)
    create = await http.post(type_, json=MINIMAL[type_](world), headers=FHIR_JSON)
    assert create.status_code == (201 if "c" in letters else 403), (role, type_, create.text)


async def test_bound_token_equals_role(client_for: ClientFor, world: World) -> None:
    granted = " ".join(bound_scopes("front-desk", ["user/*.cruds"]))
    http = await client_for(granted, username="desk", role="front-desk")
    assert (await http.get(f"Patient/{world.patients['a']}")).status_code == 200
    assert (await http.get(f"Observation/{world.observations['a'][0]}")).status_code == 403
    assert (await http.get("Claim")).status_code == 403


async def test_patient_role_only_patient_scopes(client_for: ClientFor, world: World) -> None:
    user_scoped = await client_for("user/*.rs", username="pat", role="patient",
                                   patient=world.patients["a"])
    assert (await user_scoped.get("Observation")).status_code == 403
    patient_scoped = await client_for("patient/*.rs", username="pat", role="patient",
                                      patient=world.patients["a"])
    assert (await patient_scoped.get("Observation")).status_code == 200


async def test_unknown_role_gets_nothing(client_for: ClientFor) -> None:
    http = await client_for("user/*.cruds", username="x", role="janitor")
    assert (await http.get("Patient")).status_code == 403
