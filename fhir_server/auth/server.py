"""The authorization server's routes: ``/auth/*`` and ``[base]/.well-known/smart-configuration``.

None of them needs a FHIR access token (the token, introspection and revocation
endpoints authenticate clients themselves). ``discovery(settings)`` is also the
source of the ``oauth-uris`` extension in the CapabilityStatement.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from fhir_server.auth import authorize, introspect, token_endpoint
from fhir_server.auth.client_auth import ASSERTION_ALGS
from fhir_server.auth.tokens import AuthService
from fhir_server.core.config import Settings

router = APIRouter()
router.include_router(authorize.router, prefix="/auth")
router.include_router(token_endpoint.router, prefix="/auth")
router.include_router(introspect.router, prefix="/auth")

CAPABILITIES = [
    "launch-ehr", "launch-standalone", "authorize-post",
    "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
    "sso-openid-connect", "context-banner",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
    "permission-offline", "permission-online", "permission-patient", "permission-user",
    "permission-v1", "permission-v2",
]
SCOPES = [
    "openid", "fhirUser", "launch", "launch/patient", "launch/encounter",
    "offline_access", "online_access",
    "patient/*.cruds", "patient/*.rs", "patient/*.read", "patient/*.write", "patient/*.*",
    "user/*.cruds", "user/*.rs", "user/*.read", "user/*.write", "user/*.*",
    "system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*",
]


def endpoints(settings: Settings) -> dict[str, str]:
    base = settings.auth_base_url
    return {"authorize": f"{base}/authorize", "token": f"{base}/token",
            "introspect": f"{base}/introspect", "revoke": f"{base}/revoke",
            "jwks": f"{base}/jwks", "launch": f"{base}/launch"}


def discovery(settings: Settings) -> dict[str, Any]:
    urls = endpoints(settings)
    return {
        "issuer": settings.base_url,
        "jwks_uri": urls["jwks"],
        "authorization_endpoint": urls["authorize"],
        "token_endpoint": urls["token"],
        "introspection_endpoint": urls["introspect"],
        "revocation_endpoint": urls["revoke"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "id_token_signing_alg_values_supported": [settings.fhir_auth_signing_alg],
        "scopes_supported": SCOPES,
        "capabilities": CAPABILITIES,
    }


@router.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
async def smart_configuration(request: Request) -> Response:
    return JSONResponse(discovery(request.app.state.settings),
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/auth/jwks", include_in_schema=False)
async def jwks(request: Request) -> Response:
    auth: AuthService = request.app.state.auth
    return JSONResponse(await auth.keys.jwks(), headers={"Cache-Control": "public, max-age=60"})
