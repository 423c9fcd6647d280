"""Command line: ``fhir-server [COMMAND]`` (``python -m fhir_server``); ``serve`` by default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fhir_server.cli import admin as admin_cli
from fhir_server.cli import ehr as ehr_cli
from fhir_server.cli import load as loader
from fhir_server.cli import terminology as terminology_cli
from fhir_server.cli.load import Summary
from fhir_server.core.config import Settings
from fhir_server.observability import logs
from fhir_server.runtime import serving
from fhir_server.runtime.exit_codes import EXIT_BAD_CONFIGURATION
from fhir_server.storage.open import StorageError, missing_database, open_repository

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "serve"


@dataclass(frozen=True)
class Command:
    """A subcommand: its help, its extra arguments and what it runs (returns the exit code)."""

    help: str
    run: Callable[[argparse.Namespace, Settings], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    # Whether the command, with these arguments, opens the configured database: then it
    # takes --init, and without it refuses a database that does not exist yet.
    opens_database: Callable[[argparse.Namespace], bool] | None = None


def always(args: argparse.Namespace) -> bool:
    return True


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP server; without MONGODB_URI, on the embedded SQLite under FHIR_DATA_DIR.
    Exits non-zero when the start-up fails (``serving.py``)."""
    return serving.serve(settings)


LOAD_SCOPE = "system/*.cruds"  # an in-process load writes every type


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="Bundle .json / .ndjson files or folders")
    parser.add_argument("--url", help="base URL of a running server (default: load in-process "
                        "into the configured database)")
    parser.add_argument("--chunk", type=int, default=200, help="NDJSON resources per transaction")
    parser.add_argument("--token", help="access token for --url (see `fhir-server token`); "
                        "in-process loads mint their own")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def load(args: argparse.Namespace, settings: Settings) -> int:
    """Load files, print a summary; exit 1 when anything failed."""
    summary = asyncio.run(_load(args, settings))
    for error in summary.errors[:20]:
        print(f"failed: {error}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


async def _load(args: argparse.Namespace, settings: Settings) -> Summary:
    if args.url:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        async with httpx.AsyncClient(base_url=args.url.rstrip("/") + "/", timeout=600,
                                     headers=headers) as http:
            summary = await loader.load(http, args.paths, chunk=args.chunk,
                                        progress=not args.quiet)
        for path in loader.audit_files(args.paths):
            summary.errors.append(f"{path.name}: AuditEvents are loaded in-process only "
                                  "(without --url); skipped")
        return summary
    async with _in_process(settings) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, timeout=600,
                                     base_url=settings.base_url + "/") as http:
            if settings.fhir_auth != "off":
                from fhir_server.auth.tokens import Grant

                token = await app.state.auth.issue_access_token(
                    Grant(client_id="fhir-server-load", scope=LOAD_SCOPE), lifetime=600)
                http.headers["Authorization"] = f"Bearer {token}"
            summary = await loader.load(http, args.paths, chunk=args.chunk,
                                        progress=not args.quiet)
        for path in loader.audit_files(args.paths):  # what `export` wrote of the audit trail
            summary.loaded += await app.state.audit.restore(loader.read_ndjson(path))
        return summary


@asynccontextmanager
async def _in_process(settings: Settings) -> AsyncIterator[Any]:
    """The app with its lifespan run, on the configured database."""
    from fhir_server.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--history", action="store_true",
                        help="every version (history Bundles) instead of the current ones")
    parser.add_argument("--type", dest="types", action="append",
                        help="only this resource type (repeatable)")
    parser.add_argument("--from-ferretdb", type=Path, metavar="DATA_DIR",
                        help="read a data directory of the embedded FerretDB of earlier versions")


def export_data(args: argparse.Namespace, settings: Settings) -> int:
    """Write the configured database's resources as NDJSON (or history Bundles)."""
    from fhir_server.cli.export import export

    async def run(settings: Settings) -> str:
        repo = await open_repository(settings)
        try:
            done = await export(repo, args.out, history=args.history, types=args.types)
        finally:
            await repo.close()
        return done.line()

    try:
        if args.from_ferretdb is None:
            print(asyncio.run(run(settings)))
            return 0
        try:  # test support, in a source checkout only (not installed with the package)
            from tools.ferretdb.launcher import shared_database
        except ImportError:
            print("fhir-server: --from-ferretdb needs the source checkout's tools/ferretdb "
                  "(run it from the repository's folder after `make ferretdb`)", file=sys.stderr)
            return 1
        with shared_database(data_dir=args.from_ferretdb, binary=settings.fhir_ferretdb_bin) as uri:
            print(asyncio.run(run(settings.model_copy(update={"mongodb_uri": uri}))))
        return 0
    except (StorageError, OSError, RuntimeError) as error:
        print(f"fhir-server: {error}", file=sys.stderr)
        return 1


def _x12_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["poll"],
                        help="poll: fetch and apply every clearinghouse's waiting 277CA and "
                        "835 files once, then ask about the claims that waited "
                        "FHIR_CLAIM_STATUS_DAYS (276/277)")


def x12(args: argparse.Namespace, settings: Settings) -> int:
    """One poll of the clearinghouses; exit 1 when a file was refused or one was not reached."""
    from fhir_server.operations.x12_poll import poll_once

    async def run() -> Any:
        async with _in_process(settings) as app:
            return await poll_once(repo=app.state.repo, settings=app.state.settings,
                                   x12=app.state.services.x12)

    summary = asyncio.run(run())
    for line in summary.applied:
        print(f"applied: {line}")
    for line in summary.refused:
        print(f"refused: {line}", file=sys.stderr)
    for line in summary.failed:
        print(f"failed: {line}", file=sys.stderr)
    for line in summary.asked:
        print(f"asked (276/277): {line}")
    print(f"{len(summary.applied)} applied, {len(summary.refused)} refused, "
          f"{len(summary.failed)} failed, {len(summary.asked)} claims asked about")
    return 1 if summary.refused or summary.failed else 0


COMMANDS: dict[str, Command] = {
    "serve": Command(help="run the FHIR server (the default)", run=serve),
    "load": Command(help="load Bundle and NDJSON files", run=load,
                    add_arguments=_load_arguments, opens_database=lambda a: not a.url),
    "export": Command(help="write the data as NDJSON (or history Bundles) for `load`",
                      run=export_data, add_arguments=_export_arguments,
                      opens_database=lambda a: a.from_ferretdb is None),
    "clients": Command(help="register SMART apps and backend clients", run=admin_cli.clients,
                       add_arguments=admin_cli.client_arguments, opens_database=always),
    "users": Command(help="add users who sign in at the login page", run=admin_cli.users,
                     add_arguments=admin_cli.user_arguments, opens_database=always),
    "token": Command(help="print an access token for a registered client", run=admin_cli.token,
                     add_arguments=admin_cli.token_arguments, opens_database=always),
    "keys": Command(help="rotate the token signing key, or make a payer client key",
                    run=admin_cli.keys,
                    add_arguments=admin_cli.key_arguments,
                    opens_database=lambda a: a.action == "rotate"),
    "ehr": Command(help="sync from an EHR's FHIR API (ehr sync ENDPOINT_ID)", run=ehr_cli.run,
                   add_arguments=ehr_cli.arguments, opens_database=always),
    "launch": Command(help="create an EHR launch context, print its id", run=admin_cli.launch,
                      add_arguments=admin_cli.launch_arguments, opens_database=always),
    "x12": Command(help="poll the X12 clearinghouses for 277CA and 835 files", run=x12,
                   add_arguments=_x12_arguments, opens_database=always),
    "terminology": Command(help="load FHIR R4's terminology and ICD-10-CM, or your own code "
                           "systems", run=terminology_cli.run,
                           add_arguments=terminology_cli.arguments, opens_database=always),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-server",
        description="FHIR R4 server. Configuration comes from environment variables.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        if command.add_arguments is not None:
            command.add_arguments(sub)
        if command.opens_database is not None:
            for leaf in _leaves(sub):
                leaf.add_argument("--init", action="store_true", help=INIT_HELP)
    return parser


INIT_HELP = ("create the database when FHIR_DATA_DIR (or MONGODB_URI's MONGODB_DATABASE) "
             "holds none yet; without it the command refuses, so that a command run with "
             "other settings than the server's never makes a second, empty database")
EXIT_NO_DATABASE = 1


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that take a command's options: its own, or those of its actions
    (``clients add``)."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return [parser]
    return [leaf for action in actions for sub in action.choices.values()
            for leaf in _leaves(sub)]


def refuse_missing_database(settings: Settings) -> bool:
    """Whether the configured database is missing (said on stderr, with what to do)."""
    try:
        missing = asyncio.run(missing_database(settings))
    except Exception as error:  # MongoDB not reached: the command would fail the same way
        print(f"fhir-server: cannot reach the database: {type(error).__name__}",
              file=sys.stderr)
        return True
    if missing is None:
        return False
    print(f"fhir-server: {missing}. Run the command with the server's settings "
          "(FHIR_DATA_DIR, MONGODB_URI, MONGODB_DATABASE), or add --init to create a new "
          "database there.", file=sys.stderr)
    return True


def setup_logging(settings: Settings) -> None:
    logs.setup_logging(settings.fhir_log_level, settings.fhir_log_format)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, DEFAULT_COMMAND])
    settings = serving.configured()
    if settings is None:
        return EXIT_BAD_CONFIGURATION
    command = COMMANDS[args.command]
    if (command.opens_database is not None and command.opens_database(args)
            and not args.init and refuse_missing_database(settings)):
        return EXIT_NO_DATABASE
    return command.run(args, settings)
