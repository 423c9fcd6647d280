"""An active Subscription as the server reads it: criteria, channel and owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.auth.principal import Principal
from fhir_server.core.config import Settings
from fhir_server.storage.records import Records
from fhir_server.subscriptions.channel import RestHook, guard, parse_channel
from fhir_server.subscriptions.criteria import Criteria, parse_criteria
from fhir_server.subscriptions.state import principal_of, state_of


@dataclass(frozen=True)
class Active:
    id_: str
    criteria: Criteria
    hook: RestHook
    owner: Principal | None  # whose access confines its notifications (None: auth off)


async def read_active(records: Records, settings: Settings, *, id_: str,
                      resource: dict[str, Any]) -> Active:
    """The Subscription's content read again (FhirError when it no longer passes, say the
    allow-list changed since it was written), with its owner from its record."""
    criteria = parse_criteria(resource.get("criteria"), base_url=settings.base_url)
    hook = parse_channel(resource, allowed=guard(settings.fhir_subscription_allowed_hosts))
    owner = principal_of((await state_of(records, id_)).get("owner"))
    return Active(id_=id_, criteria=criteria, hook=hook, owner=owner)
