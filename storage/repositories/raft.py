"""The ``raft_hard_state``, ``raft_log`` and ``raft_snapshot`` tables.

A log entry's voter set is stored as a JSON list: it is small, written once and read
only at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import aiosqlite

from murmur.storage.records import RaftDurableState, RaftEntryRecord, RaftSnapshotRecord
from murmur.storage.repositories import meta

REJOINING_META_KEY = "raft_rejoining"
"""Set (in ``meta``) by :func:`forget`, removed by :func:`end_rejoining`: the node's
Raft state was dropped by a restore and it has not caught up with a leader since."""


def _voters_text(voters: Iterable[str]) -> str:
    return json.dumps(sorted(voters))


def _voters_of(text: str) -> tuple[str, ...]:
    return tuple(str(name) for name in json.loads(text))


async def load(connection: aiosqlite.Connection) -> RaftDurableState:
    """Term, vote, snapshot and the log after it, in index order."""
    term, voted_for = 0, None
    for row in await connection.execute_fetchall(
        "SELECT term, voted_for FROM raft_hard_state WHERE id = 1"
    ):
        term, voted_for = int(row["term"]), row["voted_for"]
    snapshot = None
    for row in await connection.execute_fetchall(
        "SELECT last_term, last_index, voters, data FROM raft_snapshot WHERE id = 1"
    ):
        snapshot = RaftSnapshotRecord(
            last_term=int(row["last_term"]),
            last_index=int(row["last_index"]),
            voters=_voters_of(row["voters"]),
            data=bytes(row["data"]),
        )
    entries = tuple(
        RaftEntryRecord(
            index=int(row["idx"]),
            term=int(row["term"]),
            kind=str(row["kind"]),
            data=bytes(row["data"]),
            voters=_voters_of(row["voters"]),
        )
        for row in await connection.execute_fetchall(
            "SELECT idx, term, kind, data, voters FROM raft_log ORDER BY idx"
        )
    )
    rejoining = await meta.get_value(connection, REJOINING_META_KEY) is not None
    return RaftDurableState(
        term=term, voted_for=voted_for, snapshot=snapshot, entries=entries, rejoining=rejoining
    )


async def forget(connection: aiosqlite.Connection, *, reason: str) -> None:
    """Drop term, vote, log and snapshot, and mark the node as rejoining."""
    await connection.execute("DELETE FROM raft_hard_state")
    await connection.execute("DELETE FROM raft_log")
    await connection.execute("DELETE FROM raft_snapshot")
    await meta.set_value(connection, REJOINING_META_KEY, reason)


async def end_rejoining(connection: aiosqlite.Connection) -> None:
    await meta.delete_value(connection, REJOINING_META_KEY)


async def voters_in_force(connection: aiosqlite.Connection) -> tuple[str, ...]:
    """The voter set of the log's last VOTERS entry, else the snapshot's, else none."""
    for row in await connection.execute_fetchall(
        "SELECT voters FROM raft_log WHERE kind = 'voters' ORDER BY idx DESC LIMIT 1"
    ):
        return _voters_of(row["voters"])
    for row in await connection.execute_fetchall("SELECT voters FROM raft_snapshot WHERE id = 1"):
        return _voters_of(row["voters"])
    return ()


async def save_hard_state(
    connection: aiosqlite.Connection, term: int, voted_for: str | None
) -> None:
    await connection.execute(
        "INSERT INTO raft_hard_state (id, term, voted_for) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET term = excluded.term, voted_for = excluded.voted_for",
        (term, voted_for),
    )


async def truncate_log(connection: aiosqlite.Connection, from_index: int) -> None:
    """Delete the entries at ``from_index`` and after (a conflicting suffix)."""
    await connection.execute("DELETE FROM raft_log WHERE idx >= ?", (from_index,))


async def append_entries(
    connection: aiosqlite.Connection, entries: Iterable[RaftEntryRecord]
) -> None:
    """Append entries (replacing any stored at the same index)."""
    await connection.executemany(
        "INSERT OR REPLACE INTO raft_log (idx, term, kind, data, voters) VALUES (?, ?, ?, ?, ?)",
        [
            (entry.index, entry.term, entry.kind, entry.data, _voters_text(entry.voters))
            for entry in entries
        ],
    )


async def save_snapshot(connection: aiosqlite.Connection, snapshot: RaftSnapshotRecord) -> None:
    """Store ``snapshot`` and drop the entries it covers."""
    await connection.execute(
        "INSERT INTO raft_snapshot (id, last_term, last_index, voters, data) "
        "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET last_term = excluded.last_term, "
        "last_index = excluded.last_index, voters = excluded.voters, data = excluded.data",
        (snapshot.last_term, snapshot.last_index, _voters_text(snapshot.voters), snapshot.data),
    )
    await connection.execute("DELETE FROM raft_log WHERE idx <= ?", (snapshot.last_index,))
