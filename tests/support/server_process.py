"""One way to run ``python -m fhir_server serve`` as a real process on a loopback port.

Every test that starts a server process does it here: its environment (the store, the
port, one worker, WARNING logs), its log in a file beside the data directory, the wait for
``/ready``, and the stop with a bound. A start that fails, a server that exits early and a
stop that overruns its bound raise with the tail of the server's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.store import HTTP_TIMEOUT, READY_TIMEOUT, ROOT, STOP_TIMEOUT, Store

SERVE = [sys.executable, "-m", "fhir_server", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def server_env(store: Store | Path, port: int, **env: str) -> dict[str, str]:
    """The environment of ``python -m fhir_server serve`` on ``store`` (or, given a path, on
    the embedded SQLite database in that data directory) and a loopback port."""
    full = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DATABASE")}
    where = store.env() if isinstance(store, Store) else {"FHIR_DATA_DIR": str(store)}
    return {**full, **where, "FHIR_PORT": str(port), "FHIR_HOST": "127.0.0.1",
            "FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir", "FHIR_LOG_LEVEL": "WARNING",
            "FHIR_WORKERS": "1", **env}


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None:
        return ""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def with_output(message: str, log: Path | None) -> str:
    out = tail(log)
    return f"{message}\n--- server log tail ({log}) ---\n{out}" if out else message


def wait_ready(base: str, proc: subprocess.Popen[Any], timeout: float = READY_TIMEOUT,
               log: Path | None = None) -> None:
    """Until ``GET base/ready`` answers 200 (RuntimeError, with the log's tail, if the
    process exits or the time runs out).

    ``/ready`` answers 503 while the server's start-up work runs; ``/health`` before that.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(with_output(
                f"the server process exited with {proc.returncode} during start-up", log))
        if time.monotonic() > deadline:
            raise RuntimeError(with_output(
                f"the server process was not ready within {timeout:g} s", log))
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT, log: Path | None = None) -> int:
    """Send ``sig`` and wait for the exit code; a process still running after ``timeout`` is
    killed (never left behind) and the test fails."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(with_output(
            f"the process did not stop within {timeout:g} s of {sig}", log)) from None


@dataclass
class ServerProcess:
    """A running (or stopped) ``python -m fhir_server serve``."""

    base: str  # the FHIR base URL: root + /fhir
    proc: subprocess.Popen[bytes]
    port: int = 0
    log: Path | None = None  # its stdout and stderr
    group: bool = False  # in its own process group (kill() reaches its workers)
    exit_code: int | None = field(default=None)

    @property
    def root(self) -> str:
        return self.base.removesuffix("/fhir")

    def output(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        wait_ready(self.root, self.proc, timeout, self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """``sig`` and the exit code; past ``timeout`` killed, and the test fails."""
        self.exit_code = stop_process(self.proc, sig, timeout, self.log)
        return self.exit_code

    def kill(self) -> None:
        """SIGKILL to the server (to its whole process group when it has one)."""
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        elif self.proc.poll() is None:
            self.proc.kill()
        self.exit_code = self.proc.wait(timeout=30)


def default_log(store: Store | Path, port: int) -> Path:
    """Beside the data directory, never in it (tests check what the server writes there)."""
    data_dir = store.data_dir if isinstance(store, Store) else store
    return data_dir.parent / f"{data_dir.name}-server-{port}.log"


def launch(store: Store | Path, *, port: int | None = None, env: dict[str, str] | None = None,
           log: Path | None = None, group: bool = False, **extra: str) -> ServerProcess:
    """Start the server (not waiting for it). ``env``: the whole environment instead of
    :func:`server_env`'s; ``log``: where its output goes (appended); ``group``: its own
    process group; ``extra``: variables added to the environment."""
    port = port or free_port()
    full = {**(env if env is not None else server_env(store, port)), **extra}
    log = log or default_log(store, port)
    with log.open("ab") as out:
        proc = subprocess.Popen(SERVE, env=full, cwd=ROOT, stdout=out, stderr=out,
                                start_new_session=group)
    return ServerProcess(base=f"http://127.0.0.1:{port}/fhir", proc=proc, port=port, log=log,
                         group=group)


@contextmanager
def server_process(store: Store | Path, *, port: int | None = None,
                   env: dict[str, str] | None = None, log: Path | None = None,
                   ready: float | None = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT,
                   **extra: str) -> Iterator[ServerProcess]:
    """The server as a real process on a loopback port, ready (``ready=None``: not waited
    for); afterwards stopped with SIGTERM unless the test stopped it, and killed (the test
    failing) past ``stop_timeout``."""
    server = launch(store, port=port, env=env, log=log, **extra)
    try:
        if ready is not None:
            try:
                server.wait_ready(ready)
            except RuntimeError:
                server.kill()
                raise
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop(timeout=stop_timeout)


def serve_until_exit(store: Store | Path, *, timeout: float = 120.0,
                     env: dict[str, str] | None = None, **extra: str) -> tuple[int, str]:
    """A server start that must end by itself (refused configuration, unusable database):
    its exit code and its output; still running after ``timeout``, it is killed and the test
    fails."""
    server = launch(store, env=env, **extra)
    try:
        code = server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(with_output(f"the server still ran after {timeout:g} s",
                                         server.log)) from None
    assert server.log is not None
    return code, server.log.read_text(errors="replace")


# -- a clinic and its payer, each a server process -------------------------------------------

def client_key_files(folder: Path) -> tuple[Path, Path]:
    """A clinic's private JWK (for its client assertions) and its public JWK Set, made by
    ``fhir-server keys client`` as an operator would; the public file holds no private part."""
    private_file, public_file = folder / "clinic.jwk", folder / "clinic-public.jwks"
    made = subprocess.run([*SERVE[:-1], "keys", "client", "--out", str(private_file)],
                          cwd=ROOT, check=True, capture_output=True, text=True,
                          timeout=HTTP_TIMEOUT)
    public_file.write_text(made.stdout)
    assert all("d" not in key for key in json.loads(made.stdout)["keys"])
    return private_file, public_file


@contextmanager
def payer_process(store: Store, *, client_id: str, jwks_file: Path, scope: str,
                  **extra: str) -> Iterator[ServerProcess]:
    """A payer as a server process with SMART on, the clinic registered on it as a backend
    client (``clients add --jwks-file``, as the payer's operator would)."""
    env = server_env(store, free_port())
    subprocess.run([*SERVE[:-1], "clients", "add", "--name", "Clinic", "--id", client_id,
                    "--jwks-file", str(jwks_file), "--scope", scope, "--init"], env=env,
                   cwd=ROOT, check=True, capture_output=True, timeout=HTTP_TIMEOUT)
    with server_process(store, **extra) as server:
        yield server
