"""What the benchmarks share: the database they run on."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fhir_server.config import Settings


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
