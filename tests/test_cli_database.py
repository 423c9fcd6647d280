"""The operator CLI works on the server's database or refuses: run with other settings (from
another folder, where FHIR_DATA_DIR=./var is another folder), a command that opens the
database exits 1 saying so, and creates nothing, unless --init asks for a new database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_server.auth.users import get_user
from fhir_server.main import create_app
from fhir_server.storage.auth_store import AuthStore
from fhir_server.storage.open import open_repository
from tests.support.store import ROOT, Store, make_settings

PASSWORD = "a-long-enough-passphrase-42"
ENGINE_ENV = ("MONGODB_URI", "MONGODB_DATABASE", "FHIR_DATA_DIR")


def cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m fhir_server ARGS`` in ``cwd`` with the environment ``env`` adds."""
    base = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV}
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), "FHIR_LOG_LEVEL": "WARNING",
                               **env},
                          capture_output=True, text=True, timeout=180)


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


@pytest.mark.slow
@pytest.mark.process
async def test_from_another_folder_without_init_nothing_is_made(
        store: Store, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = cli(elsewhere, engine_only(store), "users", "add", "ann", "--role", "admin",
                  "--password", PASSWORD)
    assert refused.returncode == 1
    assert "--init" in refused.stderr and "no database" in refused.stderr, refused.stderr
    if store.mongo_uri is None:
        assert str(elsewhere / "var" / "fhir.sqlite3") in refused.stderr
    else:
        assert repr(store.database) in refused.stderr
    assert list(elsewhere.iterdir()) == []

    made = cli(elsewhere, engine_only(store), "users", "add", "ann", "--role", "admin",
               "--password", PASSWORD, "--init")
    assert made.returncode == 0, made.stderr
    again = cli(elsewhere, engine_only(store), "users", "add", "bob", "--role", "billing",
                "--password", PASSWORD)
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
                "--password", PASSWORD)
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
