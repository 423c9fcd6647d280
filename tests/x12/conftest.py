"""The X12 tests' loopback clearinghouse: a process of its own for each test that asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.x12.world import clearinghouse_process


@pytest.fixture
def clearinghouse() -> Iterator[str]:
    yield from clearinghouse_process()
