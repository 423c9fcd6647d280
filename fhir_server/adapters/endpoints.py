"""An Endpoint resource as the adapters see it: a payer's FHIR server or a clearinghouse
(``PayerEndpoint``), with its OAuth client and X12 trading partner settings, or None when it
is not one this server can call."""

from __future__ import annotations

from typing import Any

from fhir_server.adapters.payer import FHIR_REST, X12_5010, Partner, PayerEndpoint
from fhir_server.core.errors import Unprocessable
from fhir_server.terminology.systems import ENDPOINT_CONNECTION, ENDPOINT_OAUTH, X12_CONNECTION, X12_PARTNER

Resource = dict[str, Any]


def endpoint_of(endpoint: Resource | None, local: str) -> PayerEndpoint | None:
    """An active Endpoint as the adapters see it (None: not one this server can call)."""
    if endpoint is None or endpoint.get("status") not in ("active", None):
        return None
    connection = _connection(endpoint)
    address = endpoint.get("address")
    if connection is None or not isinstance(address, str) \
            or not address.startswith(("http://", "https://")):
        return None
    extensions = {e.get("url"): e for e in endpoint.get("extension") or []}
    oauth = _parts(extensions.get(ENDPOINT_OAUTH))
    partner = None
    if connection == X12_5010:
        parts = _parts(extensions.get(X12_PARTNER))
        if not parts.get("sender") or not parts.get("receiver") \
                or parts.get("usage", "P") not in ("T", "P"):
            raise Unprocessable(f"{local} is a clearinghouse but its x12-partner extension "
                                "lacks sender, receiver or a usage of T or P",
                                expression=["Endpoint.extension"], code="required")
        partner = Partner(parts["sender"], parts["receiver"], parts.get("usage", "P"))
    return PayerEndpoint(reference=local, address=address, oauth_client_id=oauth.get("clientId"),
                         oauth_scope=oauth.get("scope"), connection=connection, partner=partner)


def _connection(endpoint: Resource) -> str | None:
    kind = endpoint.get("connectionType") or {}
    if kind.get("code") == FHIR_REST and kind.get("system") in (None, ENDPOINT_CONNECTION):
        return FHIR_REST
    if kind.get("code") == X12_5010 and kind.get("system") == X12_CONNECTION:
        return X12_5010
    return None


def _parts(extension: Resource | None) -> dict[str, str]:
    return {str(p.get("url")): str(p.get("valueString") or p.get("valueCode") or "")
            for p in (extension or {}).get("extension") or [] if isinstance(p, dict)}
