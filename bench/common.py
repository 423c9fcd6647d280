"""What the benchmarks share: the database they run on."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def database(prefix: str) -> Iterator[tuple[str, str]]:
    """(MongoDB URI, engine label): MONGODB_URI when set, else a fresh embedded FerretDB."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri, "MONGODB_URI"
        return
    from fhir_server.embedded import EmbeddedFerretDB

    embedded = EmbeddedFerretDB(data_dir=Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield embedded.start(), "embedded FerretDB 1.24 (SQLite)"
    finally:
        embedded.stop()


async def admin_headers(app: Any) -> dict[str, str]:
    """An admin backend token (system/*.cruds) from the app's own authorization server."""
    from fhir_server.auth.tokens import Grant

    token = await app.state.auth.issue_access_token(
        Grant(client_id="bench", scope="system/*.cruds"))
    return {"Authorization": f"Bearer {token}"}


# -- A server process, as `make run` starts it ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SERVER_TIMEOUT = 120.0  # seconds to become ready; also the bound of every request


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with a free loopback port (the CLI needs it too: it is in the tokens' issuer)."""
    return {**env, "FHIR_PORT": str(free_port()), "FHIR_HOST": "127.0.0.1"}


def start_server(env: dict[str, str]) -> tuple[Any, str]:
    """(process, base URL without /fhir) of ``python -m fhir_server serve`` (see server_env)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=env, cwd=ROOT)
    return proc, f"http://127.0.0.1:{env['FHIR_PORT']}"


def cli_token(env: dict[str, str], scope: str = "system/*.cruds") -> str:
    """A backend client and its token, made with the CLI as the README shows."""
    import json
    import subprocess
    import sys

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=SERVER_TIMEOUT, check=True)
        return done.stdout.strip()

    added = json.loads(cli("clients", "add", "--name", "bench", "--scope", scope,
                           "--jwks-url", "https://bench.invalid/jwks"))
    return cli("token", "--client", added["client_id"], "--scope", scope)
