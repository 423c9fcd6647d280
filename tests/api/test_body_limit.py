"""Request bodies over their limit answer 413 while they arrive, over a real socket to a real
server process: with and without Content-Length, with a Content-Length that lies, for one
resource, a Bundle and the authorization server's forms; a body at the limit is taken."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from fhir_server.api.body_limit import AUTH_FORM_BYTES
from fhir_server.core.config import Settings
from fhir_server.core.fhirjson import dumps
from tests.factories import patient
from tests.support.server_process import server_process
from tests.support.store import StoreFactory, mint_for_database
from tools.data_sets import EXAMPLES, SYNTHEA_BUNDLES

LIMIT = 64 * 1024  # FHIR_MAX_BODY_BYTES of the server under test
BUNDLE_LIMIT = 4 * LIMIT  # FHIR_MAX_BUNDLE_BYTES
CHUNK = 8 * 1024


@pytest.fixture(scope="module")
async def server(new_store: StoreFactory) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The server process with small limits, and headers with an admin token."""
    store = new_store()
    try:
        with server_process(store, FHIR_MAX_BODY_BYTES=str(LIMIT),
                            FHIR_MAX_BUNDLE_BYTES=str(BUNDLE_LIMIT)) as proc:
            token = await mint_for_database(store, proc.base)
            yield proc.base, {"Authorization": f"Bearer {token}",
                              "Content-Type": "application/fhir+json"}
    finally:
        await store.drop()


def padded(resource: dict[str, Any], size: int, fill: Any) -> bytes:
    """``resource`` serialised to exactly ``size`` bytes: ``fill(text)`` puts an ASCII text
    into it, whose length is what the rest of the JSON leaves."""
    empty = len(dumps(fill(resource, "")))
    body = dumps(fill(resource, "x" * (size - empty)))
    assert len(body) == size
    return body


def with_name_text(resource: dict[str, Any], text: str) -> dict[str, Any]:
    return {**resource, "name": [{**resource["name"][0], "text": text}]}


def patient_body(size: int) -> bytes:
    return padded(patient(family="Limit"), size, with_name_text)


def chunks(body: bytes) -> Iterator[bytes]:
    """The body as a generator: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), CHUNK):
        yield body[start:start + CHUNK]


def count(base: str, headers: dict[str, str]) -> int:
    r = httpx.get(f"{base}/Patient", params={"family": "Limit", "_summary": "count"},
                  headers=headers)
    assert r.status_code == 200, r.text
    total: int = r.json()["total"]
    return total


def assert_too_large(r: httpx.Response, setting: str, most: int) -> None:
    assert r.status_code == 413, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "too-long"
    assert setting in issue["diagnostics"] and str(most) in issue["diagnostics"]
    assert r.headers["connection"] == "close"


def raw_request(base: str, head: str, body: bytes = b"") -> bytes:
    """Sends the request line and headers (and ``body``) on a plain socket, then reads the
    answer while the request is still open: what the server says before the body ends."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def request_head(base: str, headers: dict[str, str], method: str, path: str,
                 **more: str) -> str:
    url = urlsplit(base)
    lines = [f"{method} {url.path}/{path} HTTP/1.1", f"Host: {url.netloc}",
             *(f"{k}: {v}" for k, v in {**headers, **more}.items())]
    return "\r\n".join(lines) + "\r\n"


def test_the_defaults_take_the_largest_legitimate_bodies() -> None:
    """A resource: ten times the largest official R4 example (a report with its images
    inline); a Bundle: every Synthea patient history as one transaction, many times over."""
    fields = Settings.model_fields
    largest_example = max(path.stat().st_size for path in EXAMPLES.glob("*.json"))
    assert 10 * largest_example <= fields["fhir_max_body_bytes"].default
    largest_history = max(path.stat().st_size for path in SYNTHEA_BUNDLES.glob("*.json"))
    assert 10 * largest_history <= fields["fhir_max_bundle_bytes"].default


@pytest.mark.slow
@pytest.mark.process
def test_a_body_at_the_limit_is_created_with_and_without_content_length(
        server: tuple[str, dict[str, str]]) -> None:
    base, headers = server
    body = patient_body(LIMIT)
    for content in (body, chunks(body)):
        r = httpx.post(f"{base}/Patient", content=content, headers=headers)
        assert r.status_code == 201, r.text
        stored = httpx.get(r.headers["location"], headers=headers).json()
        assert stored["name"][0]["text"] == json.loads(body)["name"][0]["text"]


@pytest.mark.process
def test_one_byte_over_the_limit_is_refused_with_and_without_content_length(
        server: tuple[str, dict[str, str]]) -> None:
    base, headers = server
    before = count(base, headers)
    body = patient_body(LIMIT + 1)
    for content in (body, chunks(body)):
        assert_too_large(httpx.post(f"{base}/Patient", content=content, headers=headers),
                         "FHIR_MAX_BODY_BYTES", LIMIT)
    put = padded({**patient(family="Limit"), "id": "over"}, LIMIT + 1, with_name_text)
    assert_too_large(httpx.put(f"{base}/Patient/over", content=put, headers=headers),
                     "FHIR_MAX_BODY_BYTES", LIMIT)
    assert count(base, headers) == before
    assert httpx.get(f"{base}/Patient/over", headers=headers).status_code == 404


@pytest.mark.process
def test_a_long_stream_without_content_length_is_cut_at_the_limit(
        server: tuple[str, dict[str, str]]) -> None:
    """Chunks pass the limit and the body never ends (no closing chunk): the 413 comes
    once the limit is passed, not at the end."""
    base, headers = server
    head = request_head(base, headers, "POST", "Patient", **{"Transfer-Encoding": "chunked"})
    piece = b"x" * CHUNK
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(LIMIT // CHUNK + 2))
    answer = raw_request(base, head, chunked)  # no closing 0-chunk: the body is still open
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    endless = (b"x" * CHUNK for _ in range(100 * LIMIT // CHUNK))  # httpx streams it
    assert_too_large(httpx.post(f"{base}/Patient", content=endless, headers=headers),
                     "FHIR_MAX_BODY_BYTES", LIMIT)


@pytest.mark.process
def test_a_content_length_over_the_limit_is_answered_before_any_body(
        server: tuple[str, dict[str, str]]) -> None:
    base, headers = server
    head = request_head(base, headers, "POST", "Patient", **{"Content-Length": str(10**12)})
    answer = raw_request(base, head)  # not a byte of the body is sent
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()


@pytest.mark.process
def test_a_content_length_under_what_is_sent_reads_no_more_than_it_says(
        server: tuple[str, dict[str, str]]) -> None:
    """The body is what Content-Length says (a cut JSON: 400); the rest is not a request."""
    base, headers = server
    before = count(base, headers)
    body = patient_body(3 * LIMIT)
    head = request_head(base, headers, "POST", "Patient", **{"Content-Length": str(LIMIT)})
    answer = raw_request(base, head, body)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert count(base, headers) == before


def transaction(size: int) -> bytes:
    def fill(bundle: dict[str, Any], text: str) -> dict[str, Any]:
        entry = bundle["entry"][0]
        return {**bundle, "entry": [{**entry, "resource": with_name_text(entry["resource"],
                                                                          text)}]}

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(family="Limit"), "request": {"method": "POST", "url": "Patient"}}]}
    return padded(bundle, size, fill)


@pytest.mark.process
def test_a_bundle_has_its_own_limit(server: tuple[str, dict[str, str]]) -> None:
    base, headers = server
    before = count(base, headers)
    r = httpx.post(f"{base}/", content=chunks(transaction(BUNDLE_LIMIT)), headers=headers)
    assert r.status_code == 200, r.text
    assert count(base, headers) == before + 1
    assert_too_large(httpx.post(f"{base}/", content=chunks(transaction(BUNDLE_LIMIT + 1)),
                                headers=headers), "FHIR_MAX_BUNDLE_BYTES", BUNDLE_LIMIT)
    assert count(base, headers) == before + 1


@pytest.mark.process
def test_the_authorization_server_takes_small_forms_only(
        server: tuple[str, dict[str, str]]) -> None:
    base, _ = server
    token_url = f"{base.removesuffix('/fhir')}/auth/token"
    form = {"grant_type": "client_credentials", "client_id": "nobody"}
    small = httpx.post(token_url, data=form)
    assert small.status_code in (400, 401), small.text  # refused by OAuth, not by size
    pad = "x" * AUTH_FORM_BYTES
    r = httpx.post(token_url, data={**form, "scope": pad})
    assert_too_large(r, "authorization server", AUTH_FORM_BYTES)
    streamed = httpx.post(token_url, content=chunks(f"scope={pad}".encode()),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_too_large(streamed, "authorization server", AUTH_FORM_BYTES)
