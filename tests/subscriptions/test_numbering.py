"""The log of a Subscription's event numbers (``numbering.py``) on a real database: across
its blocks, cut back to the saved count, and forgotten."""

from __future__ import annotations

from fhir_server.storage.open import open_repository
from fhir_server.subscriptions.numbering import BLOCK, NumberLog, forget_numbers, logged
from tests.support.store import Store, make_settings


async def test_numbers_cross_blocks_and_a_reload_keeps_only_the_saved_count(
        store: Store) -> None:
    repo = await open_repository(make_settings(store))
    try:
        outbox = [10 + 3 * i for i in range(BLOCK + BLOCK // 2)]  # rising, with gaps
        log = await NumberLog.load(repo.records, "s1", count=0, retention=3600)
        log.notified(outbox[:BLOCK - 1])
        await log.save()
        log.notified(outbox[BLOCK - 1:])  # fills the first block, opens the second
        await log.save()
        assert log.count == len(outbox)
        numbered = list(enumerate(outbox, start=1))
        assert await logged(repo.records, "s1", first=1, last=len(outbox)) == numbered
        around = (BLOCK - 2, BLOCK + 3)
        assert await logged(repo.records, "s1", first=around[0], last=around[1]) == \
            numbered[around[0] - 1:around[1]]
        # A crash after the log was written, before the cursor: the cursor's count rules,
        # and what comes next is numbered from it.
        saved = BLOCK + 5
        again = await NumberLog.load(repo.records, "s1", count=saved, retention=3600)
        assert again.count == saved
        again.notified([99_999])
        await again.save()
        assert await logged(repo.records, "s1", first=saved, last=saved + 1) == [
            (saved, outbox[saved - 1]), (saved + 1, 99_999)]
        await forget_numbers(repo.records, "s1", count=saved + 1)
        assert await logged(repo.records, "s1", first=1, last=saved + 1) == []
    finally:
        await repo.close()


async def test_a_count_saved_before_the_log_was_kept_goes_on_from_it(store: Store) -> None:
    repo = await open_repository(make_settings(store))
    try:
        count = BLOCK + 7  # a cursor's count, and no log: nothing to map those to
        log = await NumberLog.load(repo.records, "s2", count=count, retention=3600)
        assert log.count == count
        log.notified([5_000, 5_003])
        await log.save()
        assert log.count == count + 2
        assert await logged(repo.records, "s2", first=1, last=count + 2) == [
            (count + 1, 5_000), (count + 2, 5_003)]
    finally:
        await repo.close()
