"""Discovery: .well-known/smart-configuration and the CapabilityStatement's oauth-uris, no token."""

from __future__ import annotations

import httpx
import pytest
from fhirclient import client as fhirclient

from tests.support.store import BASE, HTTP_TIMEOUT

REQUIRED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "grant_types_supported",
            "code_challenge_methods_supported", "capabilities", "scopes_supported",
            "token_endpoint_auth_methods_supported", "introspection_endpoint", "revocation_endpoint",
            "response_types_supported")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


async def test_smart_configuration(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization", None)
    response = await client.get(f"{BASE}/.well-known/smart-configuration",
                                headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert all(name in doc for name in REQUIRED), set(REQUIRED) - set(doc)
    origin = BASE.removesuffix("/fhir")
    assert doc["issuer"] == BASE
    assert doc["token_endpoint"] == f"{origin}/auth/token"
    assert doc["authorization_endpoint"] == f"{origin}/auth/authorize"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(doc["token_endpoint_auth_signing_alg_values_supported"])
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(
        doc["grant_types_supported"])
    assert {"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "sso-openid-connect", "context-ehr-patient",
            "context-standalone-patient", "permission-offline", "permission-v2"} <= set(
        doc["capabilities"])
    # Every advertised endpoint answers (jwks with keys; the others refuse an empty request).
    jwks = await client.get(doc["jwks_uri"])
    assert jwks.status_code == 200 and jwks.json()["keys"]
    for name in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        answer = await client.post(doc[name], data={})
        assert answer.status_code in (400, 401), (name, answer.status_code)
        assert "error" in answer.json()


async def test_metadata_oauth_uris(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization", None)
    response = await client.get(f"{BASE}/metadata")
    assert response.status_code == 200
    security = response.json()["rest"][0]["security"]
    coding = security["service"][0]["coding"][0]
    assert (coding["system"], coding["code"]) == (
        "http://terminology.hl7.org/CodeSystem/restful-security-service", "SMART-on-FHIR")
    ext = next(e for e in security["extension"] if e["url"] == OAUTH_URIS)
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    origin = BASE.removesuffix("/fhir")
    assert uris == {name: f"{origin}/auth/{name}"
                    for name in ("authorize", "token", "introspect", "revoke")}


@pytest.mark.slow
@pytest.mark.process
def test_fhirclient_discovers_endpoints(live_server: str) -> None:
    """The SMART Python client finds the authorize and token endpoints from /metadata."""
    smart = fhirclient.FHIRClient(settings={"app_id": "demo", "api_base": live_server,
                                            "redirect_uri": "https://app.example.org/cb"})
    smart.server.get_capability()
    origin = live_server.removesuffix("/fhir")
    authorize = smart.server.authorize_uri
    assert authorize.startswith(f"{origin}/auth/authorize?")
    assert smart.server.auth._token_uri == f"{origin}/auth/token"
    page = httpx.get(authorize, timeout=HTTP_TIMEOUT)
    # fhirclient sends no PKCE challenge: the server refuses (redirect with error), never a 500.
    assert page.status_code in (302, 400)
