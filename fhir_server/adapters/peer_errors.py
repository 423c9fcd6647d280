"""What a caller is told when a call to a peer (a payer, its clearinghouse, an EHR) fails.

One message for every way a peer can fail: an address the guard refuses, nothing
listening, a TLS or protocol error, an HTTP status or an answer that is not what was
asked, an open circuit. Told apart, they would make this server a port scanner of
whatever an Endpoint names. Which one it was goes to the log, with the Endpoint's id
(never what was sent or received). A payer's verdict on what it was sent (the issue
codes and locations of its OperationOutcome with HTTP 400 or 422) is passed on beside
the message: that is an answer, which billing staff need to correct a claim.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from fhir_server.core.errors import Issue, Upstream

log = logging.getLogger("fhir_server.adapters.peer")
E = TypeVar("E", bound=Upstream)


class Refused(Upstream):
    """The peer answered, but not with what was asked: it is up (the circuit stays closed)."""


class PayerRefused(Refused):
    """A payer or its clearinghouse answered, but not with what was asked."""


def unreachable_text(peer: str, reference: str) -> str:
    return (f"The {peer} at {reference} is unreachable or did not answer as expected "
            "(the server log has the detail)")


def unreachable(peer: str, reference: str, detail: str, *, kind: type[E] = Upstream,  # type: ignore[assignment]
                issues: list[Issue] | None = None) -> E:
    """The error for the caller (``kind``: ``Refused`` when the peer answered); ``detail``,
    identifiers and statuses only, goes to the log."""
    log.warning("%s call failed endpoint=%s detail=%s", peer, reference, detail)
    return kind(unreachable_text(peer, reference), extra_issues=issues)
