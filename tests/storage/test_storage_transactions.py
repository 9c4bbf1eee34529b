"""The single writer: failed and cancelled writes roll back and leave the store usable."""

from __future__ import annotations

import asyncio

import pytest

from murmur.storage import Store


class _Boom(Exception):
    pass


async def _insert_then_fail(store: Store) -> None:
    async with store._writing() as connection:
        await connection.execute("INSERT INTO meta (key, value) VALUES ('k', 'lost')")
        raise _Boom


async def test_error_inside_a_write_rolls_it_back(store: Store) -> None:
    with pytest.raises(_Boom):
        await _insert_then_fail(store)
    assert await store.get_meta("k") is None
    await store.set_meta("k", "kept")
    assert await store.get_meta("k") == "kept"


async def test_cancelled_writes_leave_no_open_transaction(store: Store) -> None:
    # Cancel at many different moments: before the lock, during BEGIN, the INSERT or
    # the COMMIT. Whichever it hits, the store must stay consistent and usable.
    for attempt in range(40):
        write = asyncio.create_task(store.set_meta(f"k{attempt}", "maybe"))
        await asyncio.sleep(attempt * 0.0001)
        write.cancel()
        await asyncio.wait({write})
        await store.set_meta("after", str(attempt))
        assert await store.get_meta("after") == str(attempt)
        assert await store.get_meta(f"k{attempt}") in (None, "maybe")
        assert store._connection is not None
        assert not store._connection.in_transaction


async def test_concurrent_writers_are_serialized(store: Store) -> None:
    appended = await asyncio.gather(
        *(store.append_event(kind="k", subject=f"s{i}", message="m") for i in range(50))
    )
    assert sorted(event.id for event in appended) == list(range(1, 51))
    assert [event.id for event in await store.list_events()] == list(range(1, 51))
