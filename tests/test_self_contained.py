"""A clone needs nothing beside it: no test, benchmark or generator reads the build
machine's data folder next to the checkout (the data sets are vendored under ``data/``)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.store import ROOT
from tools.data_sets import DATA, DEFINITIONS, EXAMPLES, SYNTHEA_BULK, SYNTHEA_BUNDLES

# The ways a path can leave the checkout for a sibling folder named "shared": a parent of
# the root joined with it, or a relative path climbing out to it.
OUTSIDE = re.compile(r"""(\.parent|parents\[\d+\])\s*/\s*["']shared["']|\.\./shared\b""")


@pytest.mark.process
def test_nothing_reads_the_folder_beside_the_checkout() -> None:
    tracked = subprocess.run(["git", "ls-files", "tests", "bench", "tools", "Makefile", ".ci"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert len(tracked) > 50  # the tree itself was listed
    offenders = [name for name in tracked if name.endswith((".py", ".sh", "Makefile", "run"))
                 and OUTSIDE.search((ROOT / name).read_text(errors="replace"))]
    assert offenders == []


def test_the_vendored_data_sets_are_in_the_repository() -> None:
    assert DATA.parent == ROOT
    for folder in (EXAMPLES, DEFINITIONS, SYNTHEA_BULK, SYNTHEA_BUNDLES):
        assert any(folder.iterdir()), folder
    assert len(list(EXAMPLES.glob("*.json"))) == 604
    assert (DATA / "README.md").read_text().count("Apache-2.0") >= 2
