"""The adapters tests' RabbitMQ broker: one node of the tests' own for the run, started by
the first test that asks for it (tests/support/rabbitmq.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.rabbitmq import Broker


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A running broker; a test that stops it starts it again before it ends."""
    broker = Broker(tmp_path_factory.mktemp("rabbitmq"))
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
