"""FerretDB on SQLite, run as a child process on loopback: the MongoDB stand-in.

It was the embedded database of earlier versions; now the test suite runs the
MongoDB engine on it (``FHIR_TEST_ENGINE=mongo``), and ``fhir-server export
--from-ferretdb`` uses it to read a data directory those versions wrote.

The launcher (``tools/ferretdb``) prints ``ready mongodb://...`` once it accepts
connections and stops cleanly, closing SQLite, on SIGTERM, on SIGINT or when its
standard input reaches end of file. The child never outlives this process:

- on Linux it is started with ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so the kernel
  signals it when the parent dies, even by SIGKILL;
- it holds the read end of a pipe whose write end only this process has, so it
  also sees end of file when the parent dies (this covers other platforms and a
  ``start()`` called from a thread that exits, which would fire PDEATHSIG early);
- it stays in the parent's process group, so a signal to the group reaches it.

One data directory has one FerretDB at a time: two processes caching the same
SQLite files' metadata would corrupt them. The owner holds an exclusive lock on
``DATA_DIR/ferretdb.lock`` (released by the kernel even if it is killed) and,
once ready, writes its address to ``DATA_DIR/ferretdb.uri``. ``shared_database``
lets a short-lived command (``fhir-server users add`` ...) use the FerretDB of a
running server, or start its own when none runs.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, Self

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LAUNCHER_DIR = REPO_ROOT / "tools" / "ferretdb"
BINARY_NAME = "ferretdb-embedded"
BINARY_ENV = "FHIR_FERRETDB_BIN"  # read by Settings (fhir_ferretdb_bin)

_PR_SET_PDEATHSIG = 1
_START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
_STDERR_TAIL = 20
LOCK_NAME = "ferretdb.lock"
ADDRESS_NAME = "ferretdb.uri"


class DataDirBusyError(RuntimeError):
    """Another process runs the embedded FerretDB of this data directory."""


def ferretdb_binary() -> Path:
    """The launcher binary: the repository's build, built with ``go build`` if missing."""
    path = LAUNCHER_DIR / BINARY_NAME
    if not path.is_file():
        _build_launcher(path)
    return path


def _build_launcher(path: Path) -> None:
    if not (LAUNCHER_DIR / "main.go").is_file():
        raise RuntimeError(
            f"the FerretDB launcher source is not at {LAUNCHER_DIR}; "
            f"set MONGODB_URI to use a MongoDB server, or {BINARY_ENV} to a built launcher"
        )
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            f"{path} is missing and 'go' is not on PATH to build it; install Go "
            f"(or run 'make ferretdb' where Go is), or set MONGODB_URI to use a MongoDB server"
        )
    log.info("building the FerretDB launcher path=%s", path)
    # Build beside the target and rename, so a concurrent start never runs half a file.
    fd, tmp = tempfile.mkstemp(prefix=f".{BINARY_NAME}.", dir=LAUNCHER_DIR)
    os.close(fd)
    try:
        result = subprocess.run(
            [go, "build", "-o", tmp, "."],
            cwd=LAUNCHER_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"'go build' of the FerretDB launcher failed:\n{result.stderr}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal_preexec() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGTERM the child when the forking thread dies.

    Only on Linux and from the main thread: PDEATHSIG follows the thread that forked,
    so from a worker thread it could fire while this process lives on.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        log.debug("start() off the main thread: relying on stdin end-of-file only")
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class EmbeddedFerretDB:
    """One FerretDB process on a free loopback port, with its SQLite files in a directory."""

    def __init__(
        self, *, data_dir: Path, binary: Path | None = None, start_timeout: float = 30.0,
        lock_timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self._lock_fd: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._uri: str | None = None
        self._threads: list[threading.Thread] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)

    @property
    def uri(self) -> str:
        if self._uri is None:
            raise RuntimeError("the embedded FerretDB is not running")
        return self._uri

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def sqlite_dir(self) -> Path:
        return self.data_dir / "ferretdb"

    def start(self) -> str:
        """Start FerretDB and return its MongoDB URI once it accepts connections."""
        if self._proc is not None:
            raise RuntimeError("the embedded FerretDB is already started")
        binary = self.binary or ferretdb_binary()
        self.sqlite_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    uri = self._start_once(binary)
                except _PortTakenError:
                    log.warning("embedded FerretDB port was taken, retrying attempt=%d", attempt)
                    continue
                _write_address(self.data_dir, uri)
                return uri
        except BaseException:
            self._unlock()
            raise
        self._unlock()
        raise RuntimeError(f"the embedded FerretDB found no free port in {_START_ATTEMPTS} tries")

    def _lock(self) -> None:
        """Take the data directory's lock, waiting up to ``lock_timeout`` for its holder."""
        fd = os.open(self.data_dir / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise DataDirBusyError(
                        f"another process runs the embedded database in {self.data_dir}") from None
                time.sleep(0.1)
        self._lock_fd = fd
        (self.data_dir / ADDRESS_NAME).unlink(missing_ok=True)  # a dead owner's address

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            (self.data_dir / ADDRESS_NAME).unlink(missing_ok=True)
            os.close(fd)  # releases the lock

    def _start_once(self, binary: Path) -> str:
        port = _free_port()
        self._stderr_tail.clear()
        ready = threading.Event()
        proc = subprocess.Popen(
            [
                str(binary),
                "-listen",
                f"127.0.0.1:{port}",
                "-dir",
                str(self.sqlite_dir),
                "-exit-on-stdin-eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            close_fds=True,
            preexec_fn=_death_signal_preexec(),
        )
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self._threads = [
            _drain(proc.stdout, self._on_stdout_line(ready), on_eof=ready.set, name="stdout"),
            _drain(proc.stderr, self._on_stderr_line, on_eof=None, name="stderr"),
        ]
        timed_out = not ready.wait(self.start_timeout)
        if self._uri is not None:
            log.info("embedded FerretDB ready pid=%d port=%d", proc.pid, port)
            return self._uri
        self._fail_start(proc, timed_out=timed_out)

    def _fail_start(self, proc: subprocess.Popen[str], *, timed_out: bool) -> NoReturn:
        self._stop_process(timeout=5)  # also waits for the stderr tail to be complete
        tail = "\n".join(self._stderr_tail)
        if timed_out:
            raise RuntimeError(
                f"the embedded FerretDB was not ready within {self.start_timeout:g}s:\n{tail}"
            )
        if "address already in use" in tail:
            raise _PortTakenError
        raise RuntimeError(
            f"the embedded FerretDB exited with status {proc.returncode} before it was ready:\n"
            f"{tail}"
        )

    def _on_stdout_line(self, ready: threading.Event) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            if self._uri is None and line.startswith("ready "):
                self._uri = line.removeprefix("ready ").strip()
                ready.set()
            else:
                log.debug("ferretdb stdout: %s", line)

        return on_line

    def _on_stderr_line(self, line: str) -> None:
        self._stderr_tail.append(line)
        log.warning("ferretdb: %s", line)

    def stop(self, timeout: float = 10) -> None:
        """Stop FerretDB: SIGTERM (it closes SQLite), then SIGKILL after ``timeout`` seconds."""
        self._stop_process(timeout)
        self._unlock()

    def _stop_process(self, timeout: float) -> None:
        proc, self._proc, self._uri = self._proc, None, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "embedded FerretDB did not stop in %gs, killing pid=%d", timeout, proc.pid
                )
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        log.info("embedded FerretDB stopped pid=%d status=%s", proc.pid, proc.returncode)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _write_address(data_dir: Path, uri: str) -> None:
    tmp = data_dir / f".{ADDRESS_NAME}.{os.getpid()}"
    tmp.write_text(uri + "\n")
    os.replace(tmp, data_dir / ADDRESS_NAME)


def running_address(data_dir: Path, timeout: float = 30.0) -> str:
    """The address of the FerretDB another process runs for ``data_dir`` (waits while it starts)."""
    path = Path(data_dir) / ADDRESS_NAME
    deadline = time.monotonic() + timeout
    while True:
        try:
            uri = path.read_text().strip()
        except FileNotFoundError:
            uri = ""
        if uri:
            return uri
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the embedded database in {data_dir} is locked by another process "
                               "that published no address")
        time.sleep(0.1)


@contextmanager
def shared_database(*, data_dir: Path, binary: Path | None = None) -> Iterator[str]:
    """A MongoDB URI for ``data_dir``'s embedded database: the running server's, or our own.

    Our own FerretDB (when no other process runs one) is stopped on exit.
    """
    db = EmbeddedFerretDB(data_dir=data_dir, binary=binary, lock_timeout=0)
    try:
        uri = db.start()
    except DataDirBusyError:
        log.info("using the embedded database of the running server data_dir=%s", data_dir)
        yield running_address(data_dir)
        return
    try:
        yield uri
    finally:
        db.stop()


class _PortTakenError(Exception):
    """The probed free port was bound by someone else before FerretDB could."""


def _drain(
    stream: IO[str],
    on_line: Callable[[str], None],
    *,
    on_eof: Callable[[], None] | None,
    name: str,
) -> threading.Thread:
    """Read a child's pipe to its end on a daemon thread, so it never fills and blocks."""

    def run() -> None:
        try:
            for line in stream:
                on_line(line.rstrip("\n"))
        finally:
            stream.close()
            if on_eof is not None:
                on_eof()

    thread = threading.Thread(target=run, name=f"ferretdb-{name}", daemon=True)
    thread.start()
    return thread
