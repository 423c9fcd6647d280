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
