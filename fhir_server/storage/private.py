"""The data directory and the files in it are readable by the server's user alone: they hold
health data and the token signing key (directories 0700, files 0600)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("fhir_server.storage")


def make_private(path: Path, mode: int) -> None:
    """Narrow ``path``'s mode to ``mode`` (a file or folder made before, by an earlier
    version, or by a plain mkdir); where this user does not own it, the owner decides."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except PermissionError:  # a mounted volume owned by someone else
        log.warning("cannot make private path=%s mode=%o", path, mode)


def private_dir(path: Path) -> Path:
    """``path`` as a directory of this user's alone, made when missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_private(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``, a file of this user's alone (0600 from its creation on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    make_private(path, 0o600)
