"""The ``audit_chain`` and ``audit_anchors`` tables: the cluster's trail on a voter."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from murmur.storage import AuditEntry, ChainedAuditRecord, Store


def entry(seq: int, *, user: str = "max", action: str = "SubmitJob") -> ChainedAuditRecord:
    return ChainedAuditRecord(
        seq=seq,
        origin="node-2/abc",
        origin_id=seq,
        node="node-2",
        time_us=1_000_000 * seq,
        user=user,
        role="member",
        action=action,
        target=f"job-{seq}",
        result="OK",
        detail="",
        hash=bytes([seq]) * 32,
    )


async def test_entries_are_kept_and_listed_newest_first_with_filters(store: Store) -> None:
    await store.put_audit_chain(
        [entry(1), entry(2, user="vera"), entry(3, action="CancelJob"), entry(4)]
    )
    assert [r.seq for r in await store.list_audit_chain()] == [4, 3, 2, 1]
    assert [r.seq for r in await store.list_audit_chain(user="vera")] == [2]
    assert [r.seq for r in await store.list_audit_chain(action="CancelJob")] == [3]
    assert [r.seq for r in await store.list_audit_chain(since_us=3_000_000)] == [4, 3]
    assert [r.seq for r in await store.list_audit_chain(limit=2, before_seq=4)] == [3, 2]
    assert await store.list_audit_chain(limit=1) == [entry(4)]
    assert [r.seq for r in await store.audit_chain_after(1, limit=2)] == [2, 3]
    assert await store.audit_chain_last_seq() == 4
    with pytest.raises(ValueError, match="limit"):
        await store.list_audit_chain(limit=0)


async def test_an_entry_stored_is_never_overwritten(store: Store) -> None:
    await store.put_audit_chain([entry(1)])
    await store.put_audit_chain([dataclasses.replace(entry(1), user="eve"), entry(2)])
    assert [r.user for r in await store.audit_chain_after(0)] == ["max", "max"]


async def test_anchors_are_kept_once(store: Store) -> None:
    assert await store.audit_anchors() == {}
    assert await store.audit_chain_last_seq() == 0
    await store.put_audit_chain([], anchor=(10, b"h" * 32))
    await store.put_audit_chain([entry(11)], anchor=(10, b"x" * 32))
    assert await store.audit_anchors() == {10: b"h" * 32}


async def test_the_outbox_reads_oldest_first_after_an_id(store: Store) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(3):
        await store.append_audit(
            AuditEntry(moment, f"u{n}", "member", "SubmitJob", f"job-{n}", "OK", "")
        )
    after = await store.list_audit_after(1)
    assert [r.user for r in after] == ["u1", "u2"]
    assert [r.user for r in await store.list_audit_after(0, limit=1)] == ["u0"]
