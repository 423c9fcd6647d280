"""Per-type write rules (``fhir_server/service/write_rules.py``); ``register_all()`` installs them."""

from __future__ import annotations

from fhir_server.service import write_rules as rules


def register_all() -> None:
    """Install every type's rules once (create_app calls this)."""
    from fhir_server.service.rules.appointment import AppointmentRules
    from fhir_server.service.rules.task import TaskRules

    rules_: tuple[tuple[str, rules.WriteRule], ...] = (
        ("Appointment", AppointmentRules()), ("Task", TaskRules()))
    for type_, rule in rules_:
        if not any(isinstance(r, type(rule)) for r in rules.rules_for(type_)):
            rules.register(type_, rule)
