"""The payer as the clinic sees it: where it is and what can be asked of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PayerEndpoint:
    """A payer's FHIR endpoint, from an Endpoint resource (connectionType hl7-fhir-rest)."""

    reference: str  # "Endpoint/[id]", for messages and the circuit breaker
    address: str  # the payer's FHIR base URL
    oauth_client_id: str | None = None  # set: get tokens by client credentials (private_key_jwt)
    oauth_scope: str | None = None


class PayerAdapter(Protocol):
    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> dict[str, Any]:
        """Send a CoverageEligibilityRequest; return the payer's CoverageEligibilityResponse."""
        ...

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> dict[str, Any]:
        """Send a Claim; return the payer's ClaimResponse."""
        ...

    async def close(self) -> None: ...
