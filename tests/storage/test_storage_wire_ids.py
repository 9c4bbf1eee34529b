"""Ids from the wire are uint64; SQLite's integers are signed 64-bit. An id beyond
them names nothing, and asking for it is an empty answer, not an OverflowError."""

from __future__ import annotations

import pytest

from murmur.storage import Store


@pytest.mark.parametrize("since_id", [2**63 - 1, 2**63, 2**64 - 1])
async def test_events_after_an_id_beyond_sqlite_integers_are_none(
    store: Store, since_id: int
) -> None:
    await store.append_event(kind="test", subject="s", message="m")
    assert await store.list_events(since_id=since_id) == []
    assert await store.list_events(since_id=since_id, subject="s") == []
