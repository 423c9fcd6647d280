"""FHIR_AMQP_URL: an AMQP URL with a host, of which the logs say the host and port only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fhir_server.core.config import Settings, amqp_address


@pytest.mark.parametrize(("url", "address"), [
    ("amqp://fhir:s3cret@broker.example:5673/clinic", ("broker.example", 5673)),
    ("amqp://broker.example", ("broker.example", 5672)),
    ("amqps://fhir:s3cret@broker.example/", ("broker.example", 5671)),
])
def test_the_address_of_a_url_is_its_host_and_port(url: str, address: tuple[str, int]) -> None:
    assert amqp_address(url) == address


@pytest.mark.parametrize("url", ["http://fhir:s3cret@broker.example/", "amqp://fhir:s3cret@:5672/",
                                 "amqp://fhir:s3cret@broker.example:port/"])
def test_a_url_that_is_not_amqp_is_refused_without_being_echoed(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(fhir_amqp_url=url)  # type: ignore[arg-type]
    assert "fhir_amqp_url" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_the_url_is_a_secret() -> None:
    settings = Settings(fhir_amqp_url="amqp://fhir:s3cret@broker.example/")  # type: ignore[arg-type]
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.fhir_amqp_url)
