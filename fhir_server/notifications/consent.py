"""Whether a patient opted out of notifications on a channel, by a Consent.

An opt-out is a Consent with ``status`` ``active`` whose ``patient`` is the patient, with a
``provision`` of ``type`` ``deny`` whose ``action`` has the code ``notify`` of
``https://fhir-rcm-server.org/CodeSystem/consent-action`` and whose ``period`` (if any)
holds now. Its ``provision.code`` names the channels it covers (``email``, ``sms`` of
``http://hl7.org/fhir/contact-point-system``); no code covers every channel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.notifications.addresses import active
from fhir_server.service import interactions as svc
from fhir_server.storage.repository import Repository

CONSENT_ACTION = "https://fhir-rcm-server.org/CodeSystem/consent-action"
CONTACT_POINT_SYSTEM = "http://hl7.org/fhir/contact-point-system"
Resource = dict[str, Any]


def _codes(concepts: object, system: str) -> set[str]:
    out: set[str] = set()
    for concept in concepts if isinstance(concepts, list) else []:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("system") == system:
                out.add(str(coding.get("code")))
    return out


def denies(consent: Resource, channel: str, *, now: datetime) -> bool:
    """Whether one Consent opts its patient out of ``channel``."""
    provision = consent.get("provision")
    if consent.get("status") != "active" or not isinstance(provision, dict):
        return False
    if provision.get("type") != "deny" or not active(provision.get("period"), now):
        return False
    if "notify" not in _codes(provision.get("action"), CONSENT_ACTION):
        return False
    channels = _codes(provision.get("code"), CONTACT_POINT_SYSTEM)
    return not channels or channel in channels


async def opted_out(*, repo: Repository, settings: Settings, patient: str,
                    now: datetime) -> set[str]:
    """The channels (of ``email``, ``sms``) ``patient`` ("Patient/[id]") opted out of."""
    consents = await svc.find_resources(repo=repo, settings=settings, type_="Consent", criteria=[
        ("patient", patient), ("status", "active")])
    return {channel for channel in ("email", "sms")
            if any(denies(c, channel, now=now) for c in consents)}
