"""The ``audit`` table: who changed what, when, and with what result."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from murmur.storage.records import AuditEntry, AuditRecord
from murmur.storage.timestamps import from_micros, to_micros

_COLUMNS = "id, time, user, role, action, target, result, detail"


def _from_row(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        time=from_micros(row["time"]),
        user=row["user"],
        role=row["role"],
        action=row["action"],
        target=row["target"],
        result=row["result"],
        detail=row["detail"],
    )


async def append_all(
    connection: aiosqlite.Connection, entries: Sequence[AuditEntry]
) -> list[AuditRecord]:
    """Store ``entries`` in order and return them as they will read back: with their
    ids, times in UTC. One statement for the lot: each statement is a round trip to
    the database thread, and a busy node audits hundreds of calls a second.

    Must run inside a write transaction (the ids are worked out from the last one:
    nothing else inserts in between)."""
    if not entries:
        return []
    rows = [
        (to_micros(e.time), e.user, e.role, e.action, e.target, e.result, e.detail) for e in entries
    ]
    await connection.executemany(
        "INSERT INTO audit (time, user, role, action, target, result, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    async with connection.execute("SELECT last_insert_rowid()") as cursor:
        row = await cursor.fetchone()
    assert row is not None, "last_insert_rowid() always answers"
    # AUTOINCREMENT within one transaction: the rows got consecutive ids.
    first_id = int(row[0]) - len(rows) + 1
    return [
        AuditRecord(
            id=first_id + offset,
            time=from_micros(values[0]),
            user=entry.user,
            role=entry.role,
            action=entry.action,
            target=entry.target,
            result=entry.result,
            detail=entry.detail,
        )
        for offset, (entry, values) in enumerate(zip(entries, rows, strict=True))
    ]


async def list_page(
    connection: aiosqlite.Connection, *, limit: int, before_id: int | None, user: str | None
) -> list[AuditRecord]:
    """Up to ``limit`` records, newest first, with id below ``before_id`` when given.

    Pass the smallest id of one page as ``before_id`` to get the next (older) page.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    conditions: list[str] = []
    parameters: list[object] = []
    if before_id is not None:
        conditions.append("id < ?")
        parameters.append(before_id)
    if user is not None:
        conditions.append("user = ?")
        parameters.append(user)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM audit {where} ORDER BY id DESC LIMIT ?", [*parameters, limit]
    )
    return [_from_row(row) for row in rows]


async def list_after(
    connection: aiosqlite.Connection, *, after_id: int, limit: int
) -> list[AuditRecord]:
    """Up to ``limit`` records with id above ``after_id``, oldest first (the outbox
    read: what this node has not shipped to the cluster's trail yet)."""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
    )
    return [_from_row(row) for row in rows]
