"""HTTPS through the peer guard: the socket goes to the address the guard checked, and TLS
still presents (SNI) and verifies the certificate for the name in the Endpoint's URL."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fhir_server.adapters.payer import PayerEndpoint
from fhir_server.adapters.payer_fhir import FhirPayerAdapter
from fhir_server.adapters.peer_errors import unreachable_text
from fhir_server.core.config import Settings
from fhir_server.core.errors import Upstream
from tests.adapters.listeners import Listener, http_answer

ELIGIBLE = {"resourceType": "CoverageEligibilityResponse", "status": "active"}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """A CA the peer client trusts (SSL_CERT_FILE, as an operator configures a private CA)
    and server certificates from it for localhost and for another name."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    (tmp_path / "ca.pem").write_bytes(_pem(ca))
    files = {}
    for host in ("localhost", "payer.example"):
        key = ec.generate_private_key(ec.SECP256R1())
        pem = _pem(_certificate(host, key, "Test CA", ca_key, ca=False)) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        files[host] = tmp_path / f"{host}.pem"
        files[host].write_bytes(pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    yield files


def _server_tls(chain: Path, names: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)

    def record(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        names.append(str(server_name))

    context.sni_callback = record  # type: ignore[assignment]
    return context


async def _eligibility(address: str) -> dict[str, object]:
    adapter = FhirPayerAdapter(Settings(fhir_peer_allowed_hosts="localhost",
                                        fhir_payer_retries=0))
    try:
        return (await adapter.check_eligibility(
            PayerEndpoint(reference="Endpoint/tls", address=address), {})).resource
    finally:
        await adapter.close()


async def test_https_keeps_the_name_for_sni_and_the_certificate(pki: dict[str, Path]) -> None:
    names: list[str] = []
    listener = await Listener(http_answer(200, ELIGIBLE),
                              tls=_server_tls(pki["localhost"], names)).start()
    try:
        answer = await _eligibility(f"https://localhost:{listener.port}/fhir")
    finally:
        await listener.stop()
    assert answer == ELIGIBLE
    assert names == ["localhost"]
    assert b"\r\nhost: localhost:" in listener.requests[0].lower()


async def test_certificate_for_another_name_is_refused(pki: dict[str, Path]) -> None:
    names: list[str] = []
    listener = await Listener(http_answer(200, ELIGIBLE),
                              tls=_server_tls(pki["payer.example"], names)).start()
    try:
        with pytest.raises(Upstream) as raised:
            await _eligibility(f"https://localhost:{listener.port}/fhir")
    finally:
        await listener.stop()
    assert raised.value.diagnostics == unreachable_text("payer", "Endpoint/tls")
    assert names == ["localhost"]  # the handshake was made, and refused by the client
    assert listener.requests == []
