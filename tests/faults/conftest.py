"""The fault suite's seed, printed first, and its summary, printed last (kills per scenario,
slowest restart, what was checked): ``pytest_terminal_summary``."""

from __future__ import annotations

import sys

import pytest

# The EHR of tests/adapters (a second server process with Synthea data) for the $sync scenario.
from tests.adapters.test_ehr_sync import clinic_key, ehr, ehr_db  # noqa: F401
from tests.faults.harness import SEED, TALLIES, summary_lines

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")


@pytest.fixture(scope="session", autouse=True)
def _announce_seed(request: pytest.FixtureRequest) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nfault injection seed: FHIR_FAULT_SEED={SEED}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLIES:
        terminalreporter.section("fault injection summary")
        for line in summary_lines():
            terminalreporter.write_line(line)
