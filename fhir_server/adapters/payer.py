"""The payer as the clinic sees it: where it is and what can be asked of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FHIR_REST = "hl7-fhir-rest"
X12_5010 = "x12-5010"


@dataclass(frozen=True)
class Partner:
    """X12 trading partner settings of a clearinghouse Endpoint (the x12-partner extension)."""

    sender: str  # ISA06 / GS02: this clinic
    receiver: str  # ISA08 / GS03: the clearinghouse
    usage: str = "P"  # ISA15: T (test) or P (production)


@dataclass(frozen=True)
class PayerEndpoint:
    """A payer's endpoint, from an Endpoint resource: a FHIR server (connectionType
    hl7-fhir-rest) or a clearinghouse that speaks X12 5010 (x12-5010)."""

    reference: str  # "Endpoint/[id]", for messages and the circuit breaker
    address: str  # the payer's FHIR base URL, or the clearinghouse's base URL
    oauth_client_id: str | None = None  # set: get tokens by client credentials (private_key_jwt)
    oauth_scope: str | None = None
    connection: str = FHIR_REST
    partner: Partner | None = None  # X12 only


@dataclass(frozen=True)
class Exchanged:
    """A message exchanged with a payer, kept as it travelled (X12 interchanges), so that
    billing staff can see exactly what went out and what came back."""

    direction: Literal["sent", "received"]
    kind: str  # "270", "271", "837P", "999", "277CA", "835"
    text: str
    control: str  # ISA13
    content_type: str = "application/edi-x12"


@dataclass
class PayerAnswer:
    resource: dict[str, Any]  # the payer's answer as a FHIR resource
    exchanged: list[Exchanged] = field(default_factory=list)


class PayerAdapter(Protocol):
    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> PayerAnswer:
        """Send a CoverageEligibilityRequest; return the payer's CoverageEligibilityResponse."""
        ...

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> PayerAnswer:
        """Send a Claim; return the payer's ClaimResponse."""
        ...

    async def close(self) -> None: ...
