"""Per-type write rules (``fhir_server/rules.py``); ``register_all()`` installs them."""

from __future__ import annotations

from fhir_server import rules


def register_all() -> None:
    """Install every type's rules once (create_app calls this)."""
    from resources.appointment import AppointmentRules
    from resources.encounter import EncounterBillRule

    for type_, rule in (("Appointment", AppointmentRules()), ("Encounter", EncounterBillRule())):
        if not any(isinstance(r, type(rule)) for r in rules.rules_for(type_)):
            rules.register(type_, rule)
