"""The configuration reference cannot drift from ``Settings``: docs/configuration.md is
what tools/gen_config_docs.py writes, and the README names only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from fhir_server.core.config import Settings
from tools import gen_config_docs

ROOT = Path(__file__).resolve().parent.parent


def test_the_reference_is_what_the_tool_writes() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert written == gen_config_docs.render(), (
        "docs/configuration.md is out of date: run python tools/gen_config_docs.py")


def test_the_reference_has_one_row_per_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| [^|]+ \| ([^|]+) \|", text, flags=re.M)
    names = [name for name, _ in rows]
    assert names == [name.upper() for name in Settings.model_fields]
    defaults = dict(rows)
    for name, field in Settings.model_fields.items():  # spot the plain defaults
        if isinstance(field.default, int | str) and not isinstance(field.default, bool) \
                and field.default != "":
            assert defaults[name.upper()].strip().startswith(f"`{field.default}`"), name


def test_the_readme_names_only_settings_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.M)
    assert named, "the README's Configuration section lists the common settings"
    assert sorted(set(named) - {n.upper() for n in Settings.model_fields}) == []
    assert len(named) == len(set(named)), "a setting listed twice"
    assert "docs/configuration.md" in section
