"""The operator CLI works on the server's database or refuses: run with other settings (from
another folder, where FHIR_DATA_DIR=./var is another folder), a command that opens the
database exits 1 saying so, and creates nothing, unless --init asks for a new database."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fhir_server.auth.users import authenticate, get_user
from fhir_server.main import create_app
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository
from tests.support.store import ROOT, Store, make_settings

PASSWORD = "a-long-enough-passphrase-42"
ENGINE_ENV = ("MONGODB_URI", "MONGODB_DATABASE", "FHIR_DATA_DIR")


def cli(cwd: Path, env: dict[str, str], *args: str,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fhir_server ARGS`` in ``cwd`` with the environment ``env`` adds."""
    base = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV}
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), "FHIR_LOG_LEVEL": "WARNING",
                               **env},
                          input=stdin, capture_output=True, text=True, timeout=180)


def engine_only(store: Store) -> dict[str, str]:
    """The store's MongoDB settings on the mongo engine; nothing on SQLite."""
    return {k: v for k, v in store.env().items() if k != "FHIR_DATA_DIR"}


async def usernames(store: Store, settings_dir: Path, *names: str) -> list[str]:
    repo = await open_repository(make_settings(store, fhir_data_dir=settings_dir))
    try:
        store_ = AuthStore(records=repo.records)
        return [n for n in names if await get_user(store=store_, username=n) is not None]
    finally:
        await repo.close()


async def password_works(store: Store, data_dir: Path, username: str, password: str) -> bool:
    repo = await open_repository(make_settings(store, fhir_data_dir=data_dir))
    try:
        user = await authenticate(store=AuthStore(records=repo.records), username=username,
                                  password=password)
        return user is not None
    finally:
        await repo.close()


def on_a_terminal(cwd: Path, env: dict[str, str], args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, typing one answer
    after each prompt; its exit code and everything it wrote to the terminal."""
    base = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV}
    full_env = {**base, "PYTHONPATH": str(ROOT), "FHIR_LOG_LEVEL": "WARNING", **env}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "fhir_server", *args], full_env)
    seen, answered = b"", 0
    deadline = time.monotonic() + 180
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:  # a prompt nobody answers: fail, not hang
            os.kill(pid, signal.SIGKILL)
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        # One answer per prompt, typed once the prompt is shown (getpass flushes input
        # typed before it).
        if answered < len(answers) and seen.lower().count(b"password: ") > answered:
            os.write(fd, answers[answered].encode() + b"\n")
            answered += 1
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.process
async def test_the_password_is_prompted_for_on_a_terminal(store: Store, tmp_path: Path) -> None:
    """Interactive: asked twice on the terminal, never echoed, never in argv."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, shown = on_a_terminal(cwd, engine_only(store),
                                ["users", "add", "ann", "--role", "admin", "--init"],
                                [PASSWORD, PASSWORD])
    assert code == 0, shown
    assert "Password:" in shown and "Repeat password:" in shown and PASSWORD not in shown
    assert await password_works(store, cwd / "var", "ann", PASSWORD)
    assert not await password_works(store, cwd / "var", "ann", PASSWORD + "x")

    code, shown = on_a_terminal(cwd, engine_only(store),
                                ["users", "add", "bob", "--role", "billing"],
                                [PASSWORD, PASSWORD + "x"])
    assert code == 1 and "differ" in shown
    assert await usernames(store, cwd / "var", "ann", "bob") == ["ann"]


@pytest.mark.slow
@pytest.mark.process
async def test_the_password_comes_from_stdin_only_when_asked(store: Store, tmp_path: Path) -> None:
    """--password-stdin reads the first line; without a terminal and without the flag the
    command refuses (rather than wait on, or swallow, a pipe); argv never takes one."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    piped = cli(cwd, engine_only(store), "users", "add", "ann", "--role", "admin", "--init",
                "--password-stdin", stdin=PASSWORD + "\nsecond line\n")
    assert piped.returncode == 0, piped.stderr
    assert await password_works(store, cwd / "var", "ann", PASSWORD)

    no_flag = cli(cwd, engine_only(store), "users", "add", "bob", "--role", "admin",
                  stdin=PASSWORD + "\n")
    assert no_flag.returncode == 1 and "--password-stdin" in no_flag.stderr
    in_argv = cli(cwd, engine_only(store), "users", "add", "cy", "--role", "admin",
                  "--password", PASSWORD)
    assert in_argv.returncode == 2 and "unrecognized arguments" in in_argv.stderr
    assert await usernames(store, cwd / "var", "ann", "bob", "cy") == ["ann"]


@pytest.mark.slow
@pytest.mark.process
async def test_from_another_folder_without_init_nothing_is_made(
        store: Store, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = cli(elsewhere, engine_only(store), "users", "add", "ann", "--role", "admin",
                  "--password-stdin", stdin=PASSWORD + "\n")
    assert refused.returncode == 1
    assert "--init" in refused.stderr and "no database" in refused.stderr, refused.stderr
    if store.mongo_uri is None:
        assert str(elsewhere / "var" / "fhir.sqlite3") in refused.stderr
    else:
        assert repr(store.database) in refused.stderr
    assert list(elsewhere.iterdir()) == []

    made = cli(elsewhere, engine_only(store), "users", "add", "ann", "--role", "admin",
               "--password-stdin", "--init", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    again = cli(elsewhere, engine_only(store), "users", "add", "bob", "--role", "billing",
                "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 0, again.stderr
    assert await usernames(store, elsewhere / "var", "ann", "bob") == ["ann", "bob"]


@pytest.mark.process
async def test_fhir_data_dir_names_the_servers_database(store: Store,
                                                        tmp_path: Path) -> None:
    app = create_app(make_settings(store))
    async with app.router.lifespan_context(app):  # the server made its database
        pass
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    added = cli(elsewhere, store.env(), "users", "add", "cy", "--role", "clinician",
                "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert await usernames(store, store.data_dir, "cy") == ["cy"]
    assert list(elsewhere.iterdir()) == []


COMMANDS = [
    ["clients", "add", "--scope", "system/*.rs", "--jwks-url", "https://x.invalid/jwks"],
    ["token", "--client", "nobody", "--scope", "system/*.rs"],
    ["keys", "rotate"],
    ["launch", "--patient", "Patient/p1"],
    ["load", "--quiet", "nothing.ndjson"],
    ["export", "--out", "out"],
    ["x12", "poll"],
    ["ehr", "sync", "ehr1"],
    ["terminology", "load", "--pack", "fhir-r4"],
]


@pytest.mark.process
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_every_database_command_refuses_a_missing_database(
        store: Store, tmp_path: Path, args: list[str]) -> None:
    data_dir = tmp_path / "data"
    refused = cli(tmp_path, {**store.env(), "FHIR_DATA_DIR": str(data_dir)}, *args)
    assert refused.returncode == 1
    assert "--init" in refused.stderr, refused.stderr
    assert not data_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
