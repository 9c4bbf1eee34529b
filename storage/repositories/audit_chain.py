"""The ``audit_chain`` and ``audit_anchors`` tables: the cluster's audit trail as this
voter applied it from the control log, and the chain heads it restored instead."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from murmur.storage.records import ChainedAuditRecord

_COLUMNS = "seq, origin, origin_id, node, time, user, role, action, target, result, detail, hash"


def _of(row: aiosqlite.Row) -> ChainedAuditRecord:
    return ChainedAuditRecord(
        seq=int(row["seq"]),
        origin=str(row["origin"]),
        origin_id=int(row["origin_id"]),
        node=str(row["node"]),
        time_us=int(row["time"]),
        user=str(row["user"]),
        role=str(row["role"]),
        action=str(row["action"]),
        target=str(row["target"]),
        result=str(row["result"]),
        detail=str(row["detail"]),
        hash=bytes(row["hash"]),
    )


async def put_all(connection: aiosqlite.Connection, records: Iterable[ChainedAuditRecord]) -> None:
    """Insert each entry; one already stored under its ``seq`` stays as it is (a voter
    that replays its log applies the same entries again, and a stored entry is
    never overwritten: an edit must stay visible to ``murmur audit verify``)."""
    await connection.executemany(
        f"INSERT OR IGNORE INTO audit_chain ({_COLUMNS}) VALUES ({', '.join('?' * 12)})",
        [
            (
                r.seq,
                r.origin,
                r.origin_id,
                r.node,
                r.time_us,
                r.user,
                r.role,
                r.action,
                r.target,
                r.result,
                r.detail,
                r.hash,
            )
            for r in records
        ],
    )


async def list_page(
    connection: aiosqlite.Connection,
    *,
    limit: int,
    before_seq: int | None,
    user: str | None,
    action: str | None,
    since_us: int | None,
) -> list[ChainedAuditRecord]:
    """Up to ``limit`` entries matching every filter given, newest (highest seq) first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    conditions: list[str] = []
    parameters: list[object] = []
    for condition, value in (
        ("seq < ?", before_seq),
        ("user = ?", user),
        ("action = ?", action),
        ("time >= ?", since_us),
    ):
        if value is not None:
            conditions.append(condition)
            parameters.append(value)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM audit_chain {where} ORDER BY seq DESC LIMIT ?",
        [*parameters, limit],
    )
    return [_of(row) for row in rows]


async def list_after(
    connection: aiosqlite.Connection, *, after_seq: int, limit: int
) -> list[ChainedAuditRecord]:
    """Up to ``limit`` entries after ``after_seq``, in chain order (for the check)."""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM audit_chain WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    )
    return [_of(row) for row in rows]


async def last_seq(connection: aiosqlite.Connection) -> int:
    """The highest ``seq`` stored; 0 when none."""
    rows = list(await connection.execute_fetchall("SELECT MAX(seq) AS seq FROM audit_chain"))
    value = rows[0]["seq"] if rows else None
    return int(value) if value is not None else 0


async def add_anchor(connection: aiosqlite.Connection, seq: int, hash_: bytes) -> None:
    await connection.execute(
        "INSERT OR IGNORE INTO audit_anchors (seq, hash) VALUES (?, ?)", (seq, hash_)
    )


async def anchors(connection: aiosqlite.Connection) -> dict[int, bytes]:
    rows = await connection.execute_fetchall("SELECT seq, hash FROM audit_anchors ORDER BY seq")
    return {int(row["seq"]): bytes(row["hash"]) for row in rows}
