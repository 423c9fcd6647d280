"""What the benchmarks share: the database they run on."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
