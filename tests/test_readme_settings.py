"""The README's Configuration table names every setting the server reads, once."""

from __future__ import annotations

import re
from pathlib import Path

from fhir_server.core.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _configuration_rows() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.M)


def test_every_setting_has_one_row_in_the_configuration_table() -> None:
    rows = _configuration_rows()
    settings = {name.upper() for name in Settings.model_fields}
    assert sorted(settings - set(rows)) == [], "settings missing from the README's table"
    twice = sorted({name for name in rows if rows.count(name) > 1})
    assert twice == [], "settings listed twice"
