"""Operator commands: ``clients add``, ``users add``, ``token``, ``keys rotate``, ``launch``.

They work against the deployment ``make run`` serves, from the same environment
variables: ``MONGODB_URI``, or the embedded SQLite database under ``FHIR_DATA_DIR``
(``FHIR_DATA_DIR/fhir.sqlite3``, which the running server may hold open at the same
time: SQLite serialises the writers of several processes). Failures print one line on
stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fhir_server.auth.clients import change_origins, get_client, register_client
from fhir_server.auth.granting import granted
from fhir_server.auth.launch import create_launch
from fhir_server.auth.scopes import parse_scopes
from fhir_server.auth.tokens import AuthService, Grant
from fhir_server.auth.users import PATIENT_ROLE, add_user, get_user, patient_id
from fhir_server.core.config import Settings
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import StorageError, open_repository
from fhir_server.storage.repository import Repository

ROLE_CHOICES = ("admin", "clinician", "front-desk", "billing", "patient")


class CommandError(Exception):
    """A failure explained to the operator in one line."""


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[tuple[AuthService, Repository]]:
    """The configured database (the embedded one is shared safely with a running server)."""
    repo = await open_repository(settings)
    try:
        auth = AuthService(store=AuthStore(records=repo.records), settings=settings)
        await auth.start()
        yield auth, repo
    finally:
        await repo.close()


Action = Callable[[argparse.Namespace, AuthService, Repository], Awaitable[str]]


def run_action(action: Action, args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> str:
        async with _services(settings) as (auth, repo):
            return await action(args, auth, repo)

    try:
        print(asyncio.run(go()))
    except (CommandError, StorageError, ValueError) as exc:
        print(f"fhir-server: {exc}", file=sys.stderr)
        return 1
    return 0


# -- clients add, clients origins -----------------------------------------------


def client_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="register an app or a backend client")
    add.add_argument("--name", default="", help="display name shown on the login page")
    add.add_argument("--id", dest="client_id", help="client id (default: generated)")
    add.add_argument("--redirect-uri", action="append", default=[], help="repeatable")
    add.add_argument("--scope", required=True, help='allowed scopes, e.g. "openid fhirUser '
                     'launch/patient offline_access patient/*.rs"')
    add.add_argument("--confidential", action="store_true",
                     help="an app with a secret (printed once; only its hash is kept)")
    add.add_argument("--jwks-file", type=Path, help="public JWK Set (backend or asymmetric client)")
    add.add_argument("--jwks-url", help="URL of the client's public JWK Set")
    add.add_argument("--origin", dest="origins", action="append", default=[],
                     help="web origin (scheme://host[:port]) a browser may use this client "
                     "from, besides its redirect URIs' origins (CORS; repeatable)")
    origins = sub.add_parser("origins", help="add or remove a client's web origins (CORS); "
                             "a running server takes them within FHIR_CORS_REFRESH_SECONDS")
    origins.add_argument("--id", dest="client_id", required=True, help="the client's id")
    origins.add_argument("--add", action="append", default=[], help="an origin (repeatable)")
    origins.add_argument("--remove", action="append", default=[],
                         help="a registered origin (repeatable)")


async def client_origins(args: argparse.Namespace, auth: AuthService, repo: Repository
                         ) -> str:
    client = await change_origins(store=auth.store, client_id=args.client_id, add=args.add,
                                  remove=args.remove)
    return json.dumps({"client_id": client.client_id, "origins": list(client.web_origins)},
                      indent=2)


async def add_client(args: argparse.Namespace, auth: AuthService, repo: Repository) -> str:
    jwks = None
    if args.jwks_file is not None:
        try:
            jwks = json.loads(Path(args.jwks_file).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read --jwks-file: {type(exc).__name__}") from exc
    client, secret = await register_client(
        store=auth.store, name=args.name, scope=args.scope, redirect_uris=args.redirect_uri,
        confidential=args.confidential, jwks=jwks, jwks_url=args.jwks_url, client_id=args.client_id,
        origins=args.origins)
    out: dict[str, Any] = {"client_id": client.client_id, "kind": client.kind,
                           "scope": client.scope, "origins": list(client.web_origins)}
    if secret is not None:
        out["client_secret"] = secret
    return json.dumps(out, indent=2)


# -- users add -----------------------------------------------------------------


def user_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add a user who signs in at the login page")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    # Never on the command line: argv is visible to every user of the machine (ps,
    # /proc/PID/cmdline) and is kept in shell histories.
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input "
                     "(default: prompted for, twice, on the terminal)")
    add.add_argument("--patient", action="append", default=[],
                     help="Patient/id the user acts for (repeatable; needed for role patient)")
    add.add_argument("--fhir-user", help="the user's resource, e.g. Practitioner/123")


def _password(args: argparse.Namespace) -> str:
    """The password from stdin (--password-stdin) or a prompt, never from argv."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to prompt for the password on: give it on standard "
                           "input with --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise CommandError("the passwords differ")
    return first


async def add_user_action(args: argparse.Namespace, auth: AuthService, repo: Repository) -> str:
    user = await add_user(store=auth.store, username=args.username, password=args.password_value,
                          role=args.role, patients=args.patient, fhir_user=args.fhir_user)
    patients = ", ".join(f"Patient/{p}" for p in user.patients) or "none"
    return f"user {user.username} added: role {user.role}, patients {patients}"


# -- token -----------------------------------------------------------------------


def token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", required=True, help="a registered client id")
    parser.add_argument("--scope", required=True, help="requested scopes")
    parser.add_argument("--patient", help="Patient/id: the patient context of patient/ scopes")
    parser.add_argument("--encounter", help="Encounter/id: the encounter context")
    parser.add_argument("--user", help="issue for this user (their role bounds the scopes)")


async def issue_token(args: argparse.Namespace, auth: AuthService, repo: Repository) -> str:
    client = await get_client(store=auth.store, client_id=args.client)
    if client is None:
        raise CommandError(f"no client {args.client!r} (see `fhir-server clients add`)")
    user = None
    if args.user is not None:
        user = await get_user(store=auth.store, username=args.user)
        if user is None:
            raise CommandError(f"no user {args.user!r} (see `fhir-server users add`)")
    scopes = granted(args.scope, allowed=client.scope, role=user.role if user else None)
    if not scopes:
        raise CommandError("none of the requested scopes is allowed for this client and user")
    patient = patient_id(args.patient) if args.patient else None
    if user is not None and user.role == PATIENT_ROLE:
        if patient is None and len(user.patients) == 1:
            patient = user.patients[0]
        if patient not in user.patients:
            raise CommandError("--patient must be one of the user's patients")
    parsed = parse_scopes(" ".join(scopes))
    if any(s.context == "patient" for s in parsed.resource) and patient is None:
        raise CommandError("patient/ scopes need --patient Patient/id")
    if patient is not None and not await repo.exists(type_="Patient", id_=patient):
        raise CommandError(f"Patient/{patient} does not exist")
    encounter = args.encounter.removeprefix("Encounter/") if args.encounter else None
    grant = Grant(client_id=client.client_id, scope=" ".join(scopes),
                  username=user.username if user else None, role=user.role if user else None,
                  fhir_user=user.fhir_user if user else None, patient=patient, encounter=encounter)
    return await auth.issue_access_token(grant, lifetime=auth.settings.fhir_auth_token_lifetime)


# -- keys rotate, launch -----------------------------------------------------------


def key_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("rotate", help="new signing key; old tokens keep verifying until they expire")
    client = sub.add_parser("client", help="a key pair for calling payers with private_key_jwt: "
                            "the private JWK goes to FILE (FHIR_CLIENT_KEY_FILE), the public "
                            "JWK Set is printed (give it to the payer)")
    client.add_argument("--out", type=Path, required=True, help="where to write the private JWK")
    client.add_argument("--alg", choices=("ES384", "RS384"), default="ES384")


async def rotate_keys(args: argparse.Namespace, auth: AuthService, repo: Repository) -> str:
    key = await auth.keys.rotate()
    return f"new signing key kid={key.kid} alg={key.alg}"


def launch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", help="Patient/id of the launch context")
    parser.add_argument("--encounter", help="Encounter/id of the launch context")
    parser.add_argument("--client", help="only this client may use the launch")


async def launch_action(args: argparse.Namespace, auth: AuthService, repo: Repository) -> str:
    if args.client and await get_client(store=auth.store, client_id=args.client) is None:
        raise CommandError(f"no client {args.client!r}")
    return await create_launch(store=auth.store, repo=repo, patient=args.patient,
                               encounter=args.encounter, client_id=args.client, created_by="cli")


def clients(args: argparse.Namespace, settings: Settings) -> int:
    return run_action(client_origins if args.action == "origins" else add_client, args,
                      settings)


def users(args: argparse.Namespace, settings: Settings) -> int:
    try:
        args.password_value = _password(args)  # before any database work: a prompt may wait
    except CommandError as exc:
        print(f"fhir-server: {exc}", file=sys.stderr)
        return 1
    return run_action(add_user_action, args, settings)


def token(args: argparse.Namespace, settings: Settings) -> int:
    return run_action(issue_token, args, settings)


def keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "client":
        return client_key(args)
    return run_action(rotate_keys, args, settings)


def client_key(args: argparse.Namespace) -> int:
    """Write a new private JWK (owner-only file) and print its public JWK Set."""
    from fhir_server.adapters.payer_oauth import generate_client_key

    if args.out.exists():
        print(f"fhir-server: {args.out} exists; not overwriting a key", file=sys.stderr)
        return 1
    private = generate_client_key(args.alg)
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(private))
    except OSError as exc:
        print(f"fhir-server: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    public = {k: v for k, v in private.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    print(json.dumps({"keys": [public]}))
    return 0


def launch(args: argparse.Namespace, settings: Settings) -> int:
    return run_action(launch_action, args, settings)
