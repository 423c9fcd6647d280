"""The words of patient notifications: Jinja2 templates, one per (language, kind).

A template ``<language>/<kind>.j2`` (``kind``: ``appointment-booked``,
``appointment-rescheduled``, ``appointment-cancelled``, ``appointment-reminder``,
``invoice-issued``, ``payment-posted``) defines three blocks: ``subject`` (the email's
subject), ``email`` (its text) and ``sms`` (the text message). The packaged templates
(``notifications/templates/``, English and Spanish) are overridden file by file by those
of FHIR_NOTIFY_TEMPLATES. A language without the template falls back to English.

Autoescaping is on; undefined variables fail the rendering (a typo in an override is told,
not sent). The variables (``Message.values``) hold what a notification may say: the
clinic-local date and time, the amount, identifiers; never a diagnosis, code or reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from fhir_server.notifications.addresses import DEFAULT_LANGUAGE

BLOCKS = ("subject", "email", "sms")


@dataclass(frozen=True)
class Rendered:
    subject: str
    email: str
    sms: str


class Templates:
    def __init__(self, override: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override is not None:
            loaders.append(jinja2.FileSystemLoader(str(override)))
        loaders.append(jinja2.PackageLoader("fhir_server.notifications", "templates"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True,
                                      lstrip_blocks=True, keep_trailing_newline=False)

    def _template(self, language: str, kind: str) -> jinja2.Template:
        try:
            return self.env.get_template(f"{language}/{kind}.j2")
        except jinja2.TemplateNotFound:
            return self.env.get_template(f"{DEFAULT_LANGUAGE}/{kind}.j2")

    def render(self, *, language: str, kind: str, values: dict[str, Any]) -> Rendered:
        template = self._template(language, kind)
        context = template.new_context(dict(values))
        parts = {name: "".join(template.blocks[name](context)).strip() for name in BLOCKS}
        return Rendered(**parts)
