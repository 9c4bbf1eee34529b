"""The archive of forgotten jobs (``archived_jobs``) in a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from murmur.storage import ArchivedJobRecord, RecordNotFoundError, Store
from murmur.storage.migrator import latest_version

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def archived(
    job_id: str, order: int, *, user: str = "alice", queue: str = "default",
    state: str = "succeeded", data: bytes = b"",
) -> ArchivedJobRecord:  # fmt: skip
    return ArchivedJobRecord(
        id=job_id,
        submit_order=order,
        user=user,
        queue=queue,
        state=state,
        ended_at=T0 + timedelta(seconds=order),
        archived_at=T0 + timedelta(days=7, microseconds=order),
        data=data or f"job {job_id}".encode(),
    )


async def test_archived_jobs_survive_a_reopen_and_read_back_equal(store_path: Path) -> None:
    records = [archived(f"j{i}", i, data=bytes([i, 0, 255])) for i in range(1, 6)]
    async with await Store.open(store_path) as store:
        assert await store.schema_version() == latest_version()
        await store.archive_jobs(records)
        await store.archive_jobs([])
    async with await Store.open(store_path) as store:
        assert await store.get_archived_job("j3") == records[2]
        assert await store.count_archived_jobs() == 5
        with pytest.raises(RecordNotFoundError, match="archived job 'nope'"):
            await store.get_archived_job("nope")


async def test_archiving_a_job_again_replaces_it(store: Store) -> None:
    await store.archive_jobs([archived("j1", 1)])
    again = archived("j1", 1, state="failed", data=b"newer")
    await store.archive_jobs([again])
    assert await store.get_archived_job("j1") == again
    assert await store.count_archived_jobs() == 1


async def test_listing_pages_in_submit_order_with_every_filter(store: Store) -> None:
    await store.archive_jobs(
        [
            archived("e", 50, user="bob"),
            archived("a", 10),
            archived("c", 30, state="failed"),
            archived("b", 20, queue="gpu"),
            archived("d", 40, state="cancelled", user="bob"),
        ]
    )

    async def ids(**filters: object) -> list[str]:
        return [record.id for record in await store.list_archived_jobs(**filters)]  # type: ignore[arg-type]

    assert await ids() == ["a", "b", "c", "d", "e"]
    assert await ids(limit=2) == ["a", "b"]
    assert await ids(after_submit_order=20, limit=2) == ["c", "d"]
    assert await ids(after_submit_order=50) == []
    assert await ids(states=["failed", "cancelled"]) == ["c", "d"]
    assert await ids(user="bob") == ["d", "e"]
    assert await ids(queue="gpu") == ["b"]
    assert await ids(user="bob", states=["succeeded"]) == ["e"]
