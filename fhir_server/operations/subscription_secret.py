"""``Subscription/[id]/$secret``: a new secret for signing the Subscription's notifications,
returned once.

The server draws a secret when a Subscription is first written and signs every
notification's body with it (HMAC-SHA256, hex, in ``X-Signature``: ``subscriptions/
notify.py``); it is kept beside the Subscription, never in it, so no read, search or
history shows it. This operation draws a new one, which replaces the old at once, and
answers it: the only time it is shown. A receiver calls it after creating the
Subscription, and again whenever the secret may have leaked.
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.errors import NotFound
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.subscriptions.state import rotate_secret


async def run(call: Call) -> dict[str, Any]:
    assert call.id_ is not None
    await call.check(type_="Subscription", interaction="update", id_=call.id_)
    current = await call.repo.current(type_="Subscription", id_=call.id_)
    if current is None or current.text is None:
        raise NotFound(f"Subscription/{call.id_} is not known")
    secret = await rotate_secret(call.repo.records, call.id_)
    return {"resourceType": "Parameters", "parameter": [
        {"name": "secret", "valueString": secret},
        {"name": "algorithm", "valueCode": "HMAC-SHA256"},
        {"name": "header", "valueString": "X-Signature"}]}


SUBSCRIPTION_SECRET = Operation(
    id="Subscription-secret", code="secret", title="A new notification signing secret",
    description="Draws a new secret for this Subscription's notification signatures (HMAC-"
    "SHA256 of the exact body bytes, hex, in the X-Signature header), replacing the old one "
    "at once, and returns it: the only time it is shown.",
    resource=("Subscription",), type_level=False, instance=True,
    requires=(("Subscription", "u"),),
    parameters=(
        Param("secret", "out", 1, "1", "string", "The new secret"),
        Param("algorithm", "out", 1, "1", "code", "HMAC-SHA256"),
        Param("header", "out", 1, "1", "string", "The header the signature is sent in"),
    ),
    run=run)
