"""What the benchmarks share: the database they run on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

from fhir_server.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks' payers, clearinghouses and EHRs listen on loopback, where the peer guard
# (fhir_server/core/peer_guard.py) refuses to connect unless told otherwise.
os.environ.setdefault("FHIR_PEER_ALLOWED_HOSTS", "127.0.0.1,localhost,::1")


@asynccontextmanager
async def fresh_settings(prefix: str, **overrides: Any) -> AsyncIterator[tuple[Settings, str]]:
    """(Settings of a fresh, empty database, engine label): the embedded SQLite in a
    temporary directory, or a new database on MONGODB_URI when that is set (dropped after)."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    uri = os.environ.get("MONGODB_URI")
    name = f"{prefix.strip('-')}_{uuid.uuid4().hex[:8]}"
    settings = Settings(fhir_data_dir=data_dir, mongodb_uri=uri, mongodb_database=name,
                        **overrides)
    try:
        yield settings, ("MongoDB (MONGODB_URI)" if uri else "embedded SQLite")
    finally:
        if uri:
            from pymongo import AsyncMongoClient

            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
            await client.drop_database(name)
            await client.close()


async def admin_headers(app: Any) -> dict[str, str]:
    """An admin backend token (system/*.cruds) from the app's own authorization server."""
    from fhir_server.auth.tokens import Grant

    token = await app.state.auth.issue_access_token(
        Grant(client_id="bench", scope="system/*.cruds"))
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def server(engine: str, data_dir: Path, port: int, auth: str, *,
           workers: int | None = None, tree: Path = ROOT,
           stderr: Any = None) -> Iterator[dict[str, str]]:
    """``python -m fhir_server serve`` on a fresh data directory (the embedded SQLite, or
    ``mongo``: a FerretDB standing in for MongoDB), ready; yields its environment. ``tree``:
    the checkout whose code runs (``-m`` imports from the working directory first);
    ``stderr``: where its log goes (a file; default: this process's stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    env.update({"FHIR_DATA_DIR": str(data_dir), "FHIR_PORT": str(port), "FHIR_AUTH": auth,
                "FHIR_LOG_LEVEL": "WARNING", "FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir"})
    if workers is not None:
        env["FHIR_WORKERS"] = str(workers)
    ferret = None
    if engine == "mongo":
        from tools.ferretdb.launcher import EmbeddedFerretDB

        ferret = EmbeddedFerretDB(data_dir=data_dir / "mongo")
        env.update({"MONGODB_URI": ferret.start(), "MONGODB_DATABASE": "bench"})
    proc = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve"], env=env, cwd=tree,
                            stderr=stderr)
    try:
        deadline = time.monotonic() + 300  # a first start loads the terminology packs
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield {**env, "SERVER_PID": str(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if ferret is not None:
            ferret.stop()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every live descendant: a
    server's supervisor and its workers. Read from /proc (Linux)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in tree)


def token(env: dict[str, str]) -> dict[str, str]:
    """An admin token from the operator CLI, on the server's database ({} with auth off)."""
    if env["FHIR_AUTH"] == "off":
        return {}
    from joserfc.jwk import ECKey

    jwks = Path(env["FHIR_DATA_DIR"]) / "bench-jwks.json"
    jwks.write_text(json.dumps({"keys": [ECKey.generate_key("P-384").as_dict(private=False)]}))
    cli = [sys.executable, "-m", "fhir_server"]
    subprocess.run([*cli, "clients", "add", "--id", "bench", "--jwks-file", str(jwks), "--scope",
                    "system/*.cruds"], env=env, cwd=ROOT, check=True, capture_output=True)
    out = subprocess.run([*cli, "token", "--client", "bench", "--scope", "system/*.cruds"],
                         env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- A server process, as `make run` starts it ------------------------------------------

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
