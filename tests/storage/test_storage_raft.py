"""Raft's durable state in the store: saved in one transaction, read back after a reopen."""

from __future__ import annotations

from pathlib import Path

from murmur.storage import RaftEntryRecord, RaftSnapshotRecord, Store


def _entry(
    index: int, term: int, data: bytes = b"", voters: tuple[str, ...] = ()
) -> RaftEntryRecord:
    kind = "voters" if voters else "command"
    return RaftEntryRecord(index=index, term=term, kind=kind, data=data, voters=voters)


async def test_a_new_store_has_term_zero_no_vote_and_an_empty_log(store: Store) -> None:
    state = await store.load_raft()
    assert (state.term, state.voted_for, state.snapshot, state.entries) == (0, None, None, ())


async def test_term_vote_and_entries_survive_a_reopen(store_path: Path) -> None:
    async with await Store.open(store_path) as store:
        await store.save_raft(
            hard_state=(3, "node-b"),
            entries=[_entry(1, 1, voters=("node-a", "node-b")), _entry(2, 3, b"job")],
        )
    async with await Store.open(store_path) as store:
        state = await store.load_raft()
    assert (state.term, state.voted_for) == (3, "node-b")
    assert state.entries == (_entry(1, 1, voters=("node-a", "node-b")), _entry(2, 3, b"job"))


async def test_truncation_drops_the_conflicting_suffix_before_the_new_entries(store: Store) -> None:
    await store.save_raft(entries=[_entry(i, 1, b"old") for i in range(1, 6)])
    await store.save_raft(truncate_from=3, entries=[_entry(3, 2, b"new")])
    entries = (await store.load_raft()).entries
    assert [(e.index, e.term, e.data) for e in entries] == [
        (1, 1, b"old"),
        (2, 1, b"old"),
        (3, 2, b"new"),
    ]


async def test_a_snapshot_replaces_the_entries_it_covers(store: Store) -> None:
    await store.save_raft(entries=[_entry(i, 1) for i in range(1, 11)])
    snapshot = RaftSnapshotRecord(last_term=1, last_index=7, voters=("a", "b", "c"), data=b"state")
    await store.save_raft(snapshot=snapshot)
    state = await store.load_raft()
    assert state.snapshot == snapshot
    assert [e.index for e in state.entries] == [8, 9, 10]


async def test_the_vote_can_be_cleared_in_a_later_term(store: Store) -> None:
    await store.save_raft(hard_state=(4, "node-a"))
    await store.save_raft(hard_state=(5, None))
    state = await store.load_raft()
    assert (state.term, state.voted_for) == (5, None)
