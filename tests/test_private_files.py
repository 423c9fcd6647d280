"""What the server writes under FHIR_DATA_DIR (the database with the token signing key, the
audit journal, metrics) is readable by its own user alone: files 0600, directories 0700,
also a data directory made earlier with looser modes."""

from __future__ import annotations

import stat

import httpx
import pytest

from tests.factories import patient
from tests.support.server_process import server_process
from tests.support.store import HTTP_TIMEOUT, Store, mint_for_database


@pytest.mark.slow
@pytest.mark.process
async def test_the_data_directory_is_private(store: Store) -> None:
    store.data_dir.chmod(0o755)  # as an earlier version (or a plain mkdir) left it
    with server_process(store, FHIR_WORKERS="2") as server:
        token = await mint_for_database(store, server.base)
        async with httpx.AsyncClient(base_url=server.base + "/", timeout=HTTP_TIMEOUT,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            assert (await http.post("Patient", json=patient())).status_code == 201
        written = [store.data_dir, *store.data_dir.rglob("*")]
        assert len(written) > 2  # the database or the journal, and the metrics
        loose = {str(p.relative_to(store.data_dir)): oct(stat.S_IMODE(p.stat().st_mode))
                 for p in written if stat.S_IMODE(p.stat().st_mode) & 0o077}
        assert loose == {}
