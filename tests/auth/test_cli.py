"""The operator CLI as subprocesses: against a running server on the embedded database, on its
own embedded database, and against MONGODB_URI; then the tokens it prints at the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwk, jws

from fhir_server.auth.clients import CLIENT_ID, new_client_id
from fhir_server.auth.roles import bound_scopes
from fhir_server.cli.main import build_parser
from tests.auth.flow_helpers import PASSWORD, parse_form, pkce, query_of
from tests.support.server_process import free_port, server_env, server_process
from tests.support.store import HTTP_TIMEOUT, ROOT, Store

REDIRECT = "https://app.example.org/cb"


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def ok(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = cli(env, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """`make run`'s environment: the embedded database, the default number of workers."""
    env = server_env(tmp_path / "data", free_port())
    del env["FHIR_WORKERS"]
    return env


@pytest.fixture
def embedded_server(embedded_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`make run`'s way: python -m fhir_server serve on the embedded database."""
    with server_process(tmp_path / "data", env=embedded_env,
                        port=int(embedded_env["FHIR_PORT"])) as server:
        yield server.root
        assert server.stop() == 0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def code_flow(origin: str, client_id: str, username: str, scope: str) -> dict[str, Any]:
    """The browser and app side of the authorization code flow, against a real server."""
    verifier, challenge = pkce()
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        page = http.get(f"{origin}/auth/authorize", params={
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": scope, "state": "s1", "aud": f"{origin}/fhir", "code_challenge": challenge,
            "code_challenge_method": "S256"})
        assert page.status_code == 200, page.text
        form = parse_form(page.text)
        answer = http.post(str(page.url), data={**form.fields, "username": username,
                                                "password": PASSWORD})
        assert answer.status_code == 302, answer.text
        code = query_of(answer.headers["location"])["code"]
        token = http.post(f"{origin}/auth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id})
        assert token.status_code == 200, token.text
        body: dict[str, Any] = token.json()
        return body


@pytest.mark.slow
@pytest.mark.process
def test_cli_while_the_server_runs_on_the_embedded_database(
        embedded_env: dict[str, str], embedded_server: str, tmp_path: Path) -> None:
    origin = embedded_server
    env = embedded_env
    app = json.loads(ok(env, "clients", "add", "--name", "Chart app", "--redirect-uri", REDIRECT,
                        "--scope", "openid fhirUser launch/patient offline_access user/*.cruds "
                        "patient/*.rs"))
    assert app["kind"] == "public" and "client_secret" not in app
    rs = json.loads(ok(env, "clients", "add", "--name", "Resource server", "--confidential",
                       "--redirect-uri", REDIRECT, "--scope", "openid"))
    assert rs["kind"] == "confidential" and len(rs["client_secret"]) >= 32
    key = jwk.generate_key("RSA", 2048, parameters={"kid": "b1"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    backend = json.loads(ok(env, "clients", "add", "--name", "Nightly export", "--jwks-file",
                            str(jwks_file), "--scope", "system/*.cruds"))
    assert backend["kind"] == "backend"
    assert "added" in ok(env, "users", "add", "doc", "--role", "clinician", "--fhir-user",
                         "Practitioner/p1", "--password-stdin", stdin=PASSWORD + "\n")

    # A backend token from the CLI writes; the server accepts it.
    system_token = ok(env, "token", "--client", backend["client_id"], "--scope", "system/*.cruds")
    created = httpx.post(f"{origin}/fhir/Patient", headers={
        **bearer(system_token), "Content-Type": "application/fhir+json"},
        json={"resourceType": "Patient", "name": [{"family": "Cli"}]}, timeout=HTTP_TIMEOUT)
    assert created.status_code == 201, created.text
    patient = created.json()["id"]
    assert "added" in ok(env, "users", "add", "pat", "--role", "patient", "--patient",
                         f"Patient/{patient}", "--password-stdin", stdin=PASSWORD + "\n")

    # A user's token: bounded by the role, usable, and introspected as active.
    user_token = ok(env, "token", "--client", app["client_id"], "--scope", "user/*.rs",
                    "--user", "doc")
    read = httpx.get(f"{origin}/fhir/Patient/{patient}", headers=bearer(user_token),
                     timeout=HTTP_TIMEOUT)
    assert read.status_code == 200 and read.json()["id"] == patient
    info = httpx.post(f"{origin}/auth/introspect", data={"token": user_token},
                      auth=(rs["client_id"], rs["client_secret"]), timeout=HTTP_TIMEOUT).json()
    assert info["active"] is True and info["sub"] == "doc" and info["role"] == "clinician"
    patient_token = ok(env, "token", "--client", app["client_id"], "--scope", "patient/*.rs",
                       "--user", "pat")
    assert httpx.post(f"{origin}/auth/introspect", data={"token": patient_token},
                      auth=(rs["client_id"], rs["client_secret"]),
                      timeout=HTTP_TIMEOUT).json()["patient"] == patient

    # The users and clients the CLI made sign in through the running server.
    body = code_flow(origin, app["client_id"], "pat", "launch/patient patient/*.rs openid fhirUser")
    assert body["patient"] == patient
    assert httpx.get(f"{origin}/fhir/Patient/{patient}", headers=bearer(body["access_token"]),
                     timeout=HTTP_TIMEOUT).status_code == 200

    launch = ok(env, "launch", "--patient", f"Patient/{patient}")
    assert len(launch) >= 16

    # keys rotate: the old token still verifies, new tokens carry the new kid.
    old_kid = jws.extract_compact(user_token.encode()).headers()["kid"]
    rotated = ok(env, "keys", "rotate")
    new_token = ok(env, "token", "--client", app["client_id"], "--scope", "user/*.rs", "--user", "doc")
    new_kid = jws.extract_compact(new_token.encode()).headers()["kid"]
    assert new_kid != old_kid and f"kid={new_kid}" in rotated
    for token in (user_token, new_token):
        assert httpx.get(f"{origin}/fhir/Patient/{patient}", headers=bearer(token),
                         timeout=HTTP_TIMEOUT).status_code == 200
    deadline = time.monotonic() + HTTP_TIMEOUT  # the server reloads its keys every few seconds
    while True:
        kids = {k["kid"] for k in
                httpx.get(f"{origin}/auth/jwks", timeout=HTTP_TIMEOUT).json()["keys"]}
        if kids == {old_kid, new_kid} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert kids == {old_kid, new_kid}

    # Mistakes are one line on stderr and exit 1.
    dup = cli(env, "users", "add", "doc", "--role", "clinician", "--password-stdin",
              stdin=PASSWORD + "\n")
    assert dup.returncode == 1 and "exists" in dup.stderr
    assert cli(env, "token", "--client", "nope", "--scope", "user/*.rs").returncode == 1
    short = cli(env, "users", "add", "eve", "--role", "billing", "--password-stdin",
                stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr
    system_on_app = cli(env, "clients", "add", "--redirect-uri", REDIRECT, "--scope", "system/*.rs")
    assert system_on_app.returncode == 1
    no_patient = cli(env, "token", "--client", app["client_id"], "--scope", "patient/*.rs")
    assert no_patient.returncode == 1 and "--patient" in no_patient.stderr


@pytest.mark.slow
@pytest.mark.process
def test_cli_starts_its_own_embedded_database(embedded_env: dict[str, str]) -> None:
    env = embedded_env
    app = json.loads(ok(env, "clients", "add", "--redirect-uri", REDIRECT, "--scope", "user/*.rs",
                        "--init"))
    ok(env, "users", "add", "doc", "--role", "clinician", "--password-stdin", stdin=PASSWORD + "\n")
    token = ok(env, "token", "--client", app["client_id"], "--scope", "user/*.rs", "--user", "doc")
    data_dir = Path(env["FHIR_DATA_DIR"])
    assert not (data_dir / "ferretdb.uri").exists()  # its own FerretDB stopped with it
    with server_process(data_dir, env=env, port=int(env["FHIR_PORT"])) as server:
        origin = server.root
        # The server finds the key the CLI generated at first start, so the token verifies.
        assert httpx.get(f"{origin}/fhir/Patient", headers=bearer(token),
                         timeout=HTTP_TIMEOUT).status_code == 200
        body = code_flow(origin, app["client_id"], "doc", "user/*.rs")
        assert body["scope"].split() == bound_scopes("clinician", ["user/*.rs"])
        assert server.stop() == 0


def test_generated_client_ids_can_be_given_on_the_command_line() -> None:
    """1 in 32 URL-safe ids would start with '-' or '_'; `--client -x...` reads as an option."""
    parser = build_parser()
    for _ in range(2000):
        client_id = new_client_id()
        assert CLIENT_ID.match(client_id), client_id
        args = parser.parse_args(["token", "--client", client_id, "--scope", "user/*.rs"])
        assert args.client == client_id


@pytest.mark.slow
@pytest.mark.process
def test_cli_against_the_running_servers_database(live_server: str, store: Store) -> None:
    env = {**os.environ, **store.env(), "FHIR_BASE_URL": live_server, "FHIR_LOG_LEVEL": "WARNING"}
    app = json.loads(ok(env, "clients", "add", "--redirect-uri", REDIRECT, "--scope",
                        "user/*.rs openid"))
    ok(env, "users", "add", "ops", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    token = ok(env, "token", "--client", app["client_id"], "--scope", "user/*.rs", "--user", "ops")
    assert httpx.get(f"{live_server}/Patient", headers=bearer(token),
                     timeout=HTTP_TIMEOUT).status_code == 200
    assert httpx.get(f"{live_server}/Patient", headers=bearer(token + "x"),
                     timeout=HTTP_TIMEOUT).status_code == 401


@pytest.mark.slow
@pytest.mark.process
def test_cli_client_origins_reach_the_running_server(live_server: str, store: Store) -> None:
    """`clients add --origin` while the server runs: the server answers that origin's
    preflights once it re-reads the clients (FHIR_CORS_REFRESH_SECONDS)."""
    env = {**os.environ, **store.env(), "FHIR_BASE_URL": live_server, "FHIR_LOG_LEVEL": "WARNING"}
    extra = "http://127.0.0.1:5173"
    app = json.loads(ok(env, "clients", "add", "--redirect-uri", REDIRECT, "--scope", "user/*.rs",
                        "--origin", extra + "/", "--origin", "HTTP://127.0.0.1:5173"))
    assert app["origins"] == [REDIRECT.rsplit("/", 1)[0], extra]
    bad = cli(env, "clients", "add", "--redirect-uri", REDIRECT, "--scope", "user/*.rs",
              "--origin", "http://127.0.0.1:5173/app")
    assert bad.returncode == 1 and "not a web origin" in bad.stderr
    answer = preflight_once_not(live_server, extra, 403)
    assert answer.status_code == 204 and answer.headers["access-control-allow-origin"] == extra
    # `clients origins --remove`: the server stops answering that origin's preflights;
    # an origin a redirect URI gives cannot be removed so, nor one the client never had.
    changed = json.loads(ok(env, "clients", "origins", "--id", app["client_id"],
                            "--remove", extra + "/", "--add", "https://other.example"))
    assert changed["origins"] == [REDIRECT.rsplit("/", 1)[0], "https://other.example"]
    derived = cli(env, "clients", "origins", "--id", app["client_id"],
                  "--remove", REDIRECT.rsplit("/", 1)[0])
    assert derived.returncode == 1 and "redirect URI" in derived.stderr
    unknown = cli(env, "clients", "origins", "--id", "nobody", "--add", extra)
    assert unknown.returncode == 1 and "no client" in unknown.stderr
    assert preflight_once_not(live_server, extra, 204).status_code == 403


def preflight_once_not(live_server: str, origin: str, status: int) -> httpx.Response:
    """The first preflight from ``origin`` not answered ``status`` (the server re-reads
    the clients every FHIR_CORS_REFRESH_SECONDS), or the last one at the deadline."""
    deadline = time.monotonic() + HTTP_TIMEOUT
    while True:
        answer = httpx.options(f"{live_server}/Patient", timeout=HTTP_TIMEOUT, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET"})
        if answer.status_code != status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)
