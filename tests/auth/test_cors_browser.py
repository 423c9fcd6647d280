"""A real browser runs a SMART standalone launch from another origin (CORS end to end).

The server is the real app served by uvicorn on a loopback port (in a thread: a process
of its own would spend most of the test importing); two static pages are served from two other loopback
origins (other ports): ``browser_app/app.html``, registered as a public client's redirect
URI, and ``browser_app/stranger.html``, on an origin no client registered. Headless
Chromium (Debian's ``/usr/bin/chromium``, installed by ``make test``, driven by Playwright)
loads the app, whose JavaScript does discovery, builds the authorize URL with PKCE S256
(``crypto.subtle``), is sent to the server's login page (filled in here), comes back with
the code, redeems it at ``/auth/token`` and reads the Patient with the token, all
cross-origin; it writes what it read, and the ``ETag`` header it could see, into the page.
The stranger page, though it holds a valid token, cannot read any answer (fetch rejects).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, async_playwright

from fhir_server.auth.clients import register_client
from fhir_server.auth.users import add_user
from fhir_server.main import create_app
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository
from tests.auth.flow_helpers import PASSWORD
from tests.support.server_process import free_port
from tests.support.store import (
    HTTP_TIMEOUT,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    Store,
    make_settings,
    mint_for_database,
)

PAGES = Path(__file__).parent / "browser_app"
CHROMIUM = "/usr/bin/chromium"  # Debian's; `make test` installs it. Never a downloaded build.
# The flags that keep Chromium from reaching out (the network here is closed, and it would
# wait on it) and from needing a sandbox or a GPU; Playwright adds a fresh user data dir.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCOPE = "openid fhirUser launch/patient patient/*.rs"
PAGE_TIMEOUT_MS = 20_000


class _QuietPages(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is the assertions, not an access log


@contextmanager
def served_app(store: Store) -> Iterator[str]:
    """The app on ``store`` served by uvicorn on a loopback port, started (its lifespan
    has run); yields its FHIR base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    app = create_app(make_settings(store, fhir_base_url=base))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_TIMEOUT)


@contextmanager
def static_site() -> Iterator[str]:
    """``browser_app/`` served over HTTP on a loopback port of its own; yields its origin."""
    handler = functools.partial(_QuietPages, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def _register(store: Store, base: str, *, redirect_uri: str, patient: str) -> str:
    """The public client and the patient user, as `fhir-server clients add` / `users add`
    would make them while the server runs (another connection to its database)."""
    repo = await open_repository(make_settings(store, fhir_base_url=base))
    try:
        auth_store = AuthStore(records=repo.records)
        client, _ = await register_client(store=auth_store, name="Browser app", scope=SCOPE,
                                          redirect_uris=[redirect_uri])
        await add_user(store=auth_store, username="browser-pat", password=PASSWORD,
                       role="patient", patients=[patient])
        return client.client_id
    finally:
        await repo.close()


async def _outcome(page: Page) -> dict[str, Any]:
    await page.wait_for_function("document.getElementById('result').textContent !== ''",
                                 timeout=PAGE_TIMEOUT_MS)
    text = await page.text_content("#result")
    assert text is not None
    found: dict[str, Any] = json.loads(text)
    return found


@pytest.mark.slow
@pytest.mark.process
async def test_browser_smart_app_on_another_origin(store: Store, tmp_path: Path) -> None:
    with served_app(store) as base, static_site() as app_origin, static_site() as stranger_origin:
        admin = await mint_for_database(store, base)
        patient = {"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Ada"]}]}
        created = httpx.post(f"{base}/Patient", json=patient, timeout=HTTP_TIMEOUT, headers={
            "Authorization": f"Bearer {admin}", "Content-Type": "application/fhir+json"})
        assert created.status_code == 201, created.text
        pid, version = created.json()["id"], created.json()["meta"]["versionId"]
        client_id = await _register(store, base, redirect_uri=f"{app_origin}/app.html",
                                    patient=pid)
        token = await mint_for_database(store, base, "patient/*.rs", client_id=client_id,
                                        patient=pid)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                page.set_default_timeout(PAGE_TIMEOUT_MS)
                await page.goto(f"{app_origin}/app.html?"
                                + urlencode({"iss": base, "client_id": client_id, "scope": SCOPE}))
                await page.wait_for_url(f"{base.removesuffix('/fhir')}/auth/authorize?**")
                await page.fill("#username", "browser-pat")
                await page.fill("#password", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{app_origin}/app.html?**")
                assert await _outcome(page) == {
                    "status": 200, "patient": pid, "family": patient["name"][0]["family"],
                    "given": patient["name"][0]["given"], "etag": f'W/"{version}"'}

                stranger = await browser.new_page()
                await stranger.goto(f"{stranger_origin}/stranger.html?"
                                    + urlencode({"iss": base, "token": token, "patient": pid}))
                # Its own origin it reads; the server's answers never reach it.
                assert await _outcome(stranger) == {
                    "own": "read 200", "discovery": "TypeError", "read": "TypeError"}
            finally:
                await browser.close()
