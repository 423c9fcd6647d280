"""Pure parts of patient notifications: the address and language read from a Patient, the
opt-out Consent, and the templates (overrides, fallback to English, autoescaping)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fhir_server.core.config import Settings
from fhir_server.notifications.addresses import address, language
from fhir_server.notifications.channels import channels
from fhir_server.notifications.consent import denies
from fhir_server.notifications.templates import Templates
from tests.notifications.builders import opt_out

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_lowest_rank_in_its_period_is_chosen() -> None:
    patient = {"telecom": [
        {"system": "email", "value": "unranked@example.org"},
        {"system": "email", "value": "second@example.org", "rank": 2},
        {"system": "email", "value": "expired@example.org", "rank": 1,
         "period": {"end": "2026-12-06"}},
        {"system": "email", "value": "first@example.org", "rank": 1,
         "period": {"start": "2026-01-01T00:00:00Z"}},
        {"system": "email", "value": "future@example.org", "rank": 0,
         "period": {"start": "2027-01-01"}}]}
    assert address(patient, "email", now=NOW) == "first@example.org"
    patient["telecom"] = patient["telecom"][:1]
    assert address(patient, "email", now=NOW) == "unranked@example.org"


def test_sms_goes_to_sms_or_a_mobile_phone() -> None:
    home = {"system": "phone", "use": "home", "value": "+1 555 000 0000"}
    mobile = {"system": "phone", "use": "mobile", "value": "+1 555 111 1111", "rank": 3}
    sms = {"system": "sms", "value": "+1 555 222 2222", "rank": 2}
    assert address({"telecom": [home]}, "sms", now=NOW) is None
    assert address({"telecom": [home, mobile]}, "sms", now=NOW) == mobile["value"]
    assert address({"telecom": [home, mobile, sms]}, "sms", now=NOW) == sms["value"]
    assert address({"telecom": [home, mobile, sms]}, "email", now=NOW) is None


def test_the_preferred_language() -> None:
    def spoken(code: str, preferred: bool) -> dict[str, object]:
        return {"language": {"coding": [{"code": code}]}, "preferred": preferred}

    assert language({}) == "en"
    assert language({"communication": [spoken("fr", False), spoken("es-MX", True)]}) == "es"


def test_an_opt_out_covers_its_channels_or_all() -> None:
    email_only = opt_out("p", ("email",))
    assert denies(email_only, "email", now=NOW) and not denies(email_only, "sms", now=NOW)
    every = opt_out("p")
    assert denies(every, "email", now=NOW) and denies(every, "sms", now=NOW)
    assert not denies({**every, "status": "inactive"}, "sms", now=NOW)
    permit = {**every, "provision": {**every["provision"], "type": "permit"}}
    assert not denies(permit, "sms", now=NOW)
    ended = {**every, "provision": {**every["provision"], "period": {"end": "2026-01-01"}}}
    assert not denies(ended, "email", now=NOW)


def test_templates_are_overridden_fall_back_to_english_and_escape(tmp_path: Path) -> None:
    values = {"amount": "<b>12.00 USD</b>", "invoice": "inv-1"}
    packaged = Templates().render(language="fr", kind="invoice-issued", values=values)
    assert "Your bill is ready" in packaged.email  # no French: English
    assert "&lt;b&gt;12.00 USD&lt;/b&gt;" in packaged.sms and "<b>" not in packaged.sms
    (tmp_path / "es").mkdir()
    (tmp_path / "es" / "invoice-issued.j2").write_text(
        "{% block subject %}Factura{% endblock %}{% block email %}Debe {{ amount }}"
        "{% endblock %}{% block sms %}Debe {{ amount }} ({{ invoice }}){% endblock %}")
    overridden = Templates(tmp_path).render(language="es", kind="invoice-issued",
                                            values={**values, "amount": "12.00 USD"})
    assert (overridden.subject, overridden.sms) == ("Factura", "Debe 12.00 USD (inv-1)")
    other = Templates(tmp_path).render(language="es", kind="payment-posted",
                                       values={"amount": "5.00 USD", "payment": "p-1"})
    assert "Hemos recibido un pago de 5.00 USD" in other.email  # not overridden: packaged


async def test_channels_are_on_when_set_and_a_wrong_smtp_url_leaves_email_off() -> None:
    async def names(**settings: object) -> list[str]:
        made = channels(Settings(**settings))  # type: ignore[arg-type]
        for channel in made:
            await channel.close()
        return [c.name for c in made]

    sms = {"fhir_sms_url": "https://sms.example.org/Messages.json", "fhir_sms_from": "+1555"}
    assert await names() == []
    assert await names(fhir_sms_url=sms["fhir_sms_url"]) == []  # no sender: off
    assert await names(fhir_smtp_url="smtp://mail.example.org", **sms) == ["email", "sms"]
    assert await names(fhir_smtp_url="https://mail.example.org", **sms) == ["sms"]
