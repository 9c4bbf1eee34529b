"""Audit entries are group-committed: a burst shares transactions, every entry is
durable when its call returns, and one whose caller gave up is written anyway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from murmur.storage import AuditEntry, Store


def entry(number: int) -> AuditEntry:
    return AuditEntry(datetime.now(UTC), "ada", "member", "SubmitJob", f"job-{number}", "OK", "")


async def test_a_burst_of_entries_is_all_written_in_order_of_arrival(store_path: Path) -> None:
    async with await Store.open(store_path) as store:
        records = await asyncio.gather(*(store.append_audit(entry(n)) for n in range(200)))
    assert [r.target for r in records] == [f"job-{n}" for n in range(200)]
    assert [r.id for r in records] == sorted(r.id for r in records)
    async with await Store.open(store_path) as reopened:
        stored = await reopened.list_audit(limit=500)
    assert sorted(r.target for r in stored) == sorted(f"job-{n}" for n in range(200))


async def test_each_entry_is_answered_with_the_record_that_reads_back(store: Store) -> None:
    """Several batches (a burst, then stragglers): every returned id is the stored one."""
    first = await asyncio.gather(*(store.append_audit(entry(n)) for n in range(50)))
    lone = await store.append_audit(entry(50))
    second = await asyncio.gather(*(store.append_audit(entry(n)) for n in range(51, 80)))
    returned = [*first, lone, *second]
    stored = {record.id: record for record in await store.list_audit(limit=500)}
    assert len(stored) == 80
    assert {record.id: record for record in returned} == stored


async def test_an_entry_whose_caller_was_cancelled_is_still_written(store: Store) -> None:
    waiting = asyncio.ensure_future(store.append_audit(entry(1)))
    await asyncio.sleep(0)
    waiting.cancel()
    await store.append_audit(entry(2))  # written after the first: proves it went through
    assert sorted(r.target for r in await store.list_audit()) == ["job-1", "job-2"]


async def test_close_writes_an_entry_appended_just_before(store_path: Path) -> None:
    store = await Store.open(store_path)
    appending = asyncio.ensure_future(store.append_audit(entry(1)))
    await asyncio.sleep(0)  # queued: the writer has not run yet
    await store.close()
    assert appending.done()  # close waited for the writer ...
    assert (await appending).target == "job-1"  # ... which wrote it
    assert store._audit_writer is not None
    assert store._audit_writer.done()
    async with await Store.open(store_path) as reopened:
        assert [r.target for r in await reopened.list_audit()] == ["job-1"]


async def test_close_writes_an_entry_whose_caller_gave_up(store_path: Path) -> None:
    store = await Store.open(store_path)
    appending = asyncio.ensure_future(store.append_audit(entry(1)))
    await asyncio.sleep(0)
    appending.cancel()
    await store.close()
    async with await Store.open(store_path) as reopened:
        assert [r.target for r in await reopened.list_audit()] == ["job-1"]
