"""The embedded FerretDB process: it serves MongoDB clients, stops cleanly, never outlives us."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from tests.support.store import READY_TIMEOUT, STOP_TIMEOUT, mongo_only
from tools.ferretdb.launcher import EmbeddedFerretDB

pytestmark = mongo_only

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def is_alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in {"Z", "X"}


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)


@pytest.mark.slow
@pytest.mark.process
async def test_start_serve_stop(tmp_path: Path) -> None:
    db = EmbeddedFerretDB(data_dir=tmp_path)
    uri = db.start()
    pid = db.pid
    assert pid is not None
    try:
        assert uri.startswith("mongodb://127.0.0.1:")
        assert is_alive(pid)
        assert os.getpgid(pid) == os.getpgid(0), "not in our process group"
        name = f"t_{uuid.uuid4().hex[:12]}"
        document = {"_id": "p1", "resourceType": "Patient", "name": [{"family": "Chalmers"}]}
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
        try:
            await client[name]["patients"].insert_one(dict(document))
            assert await client[name]["patients"].find_one({"_id": "p1"}) == document
        finally:
            await client.close()
        assert any((tmp_path / "ferretdb").iterdir()), "no SQLite files under data_dir/ferretdb"
    finally:
        db.stop()
    assert not is_alive(pid)
    assert db.pid is None
    db.stop()  # stopping twice is harmless


@pytest.mark.process
async def test_data_survives_restart(tmp_path: Path) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with EmbeddedFerretDB(data_dir=tmp_path) as db:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(db.uri)
        await client[name]["c"].insert_one({"_id": 1, "v": "kept"})
        await client.close()
    with EmbeddedFerretDB(data_dir=tmp_path) as db:
        client = AsyncMongoClient(db.uri)
        assert await client[name]["c"].find_one({"_id": 1}) == {"_id": 1, "v": "kept"}
        await client.close()


@pytest.mark.process
def test_failed_start_is_reported(tmp_path: Path) -> None:
    not_a_launcher = tmp_path / "fake"
    not_a_launcher.write_text("#!/bin/sh\necho 'cannot open the database' >&2\nexit 7\n")
    not_a_launcher.chmod(0o755)
    db = EmbeddedFerretDB(data_dir=tmp_path, binary=not_a_launcher)
    with pytest.raises(RuntimeError, match=r"status 7.*\n.*cannot open the database"):
        db.start()
    assert db.pid is None


PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tools.ferretdb.launcher import EmbeddedFerretDB

    db = EmbeddedFerretDB(data_dir=Path(sys.argv[1]))
    db.start()
    print(db.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.process
def test_no_orphan_when_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    child: int | None = None
    try:
        assert parent.stdout is not None
        readable, _, _ = select.select([parent.stdout], [], [], READY_TIMEOUT)
        assert readable, f"the parent printed nothing within {READY_TIMEOUT:g} s"
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"parent printed {line!r}"
        child = int(line)
        assert is_alive(child)
        parent.kill()
        parent.wait(timeout=STOP_TIMEOUT)
        assert wait_gone(child, timeout=STOP_TIMEOUT), f"FerretDB pid {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and is_alive(child):
            os.kill(child, signal.SIGKILL)
