"""The ``audit`` table: who changed what, when, and with what result."""

from __future__ import annotations

import sqlite3

import aiosqlite

from storage.records import AuditEntry, AuditRecord
from storage.timestamps import from_micros, to_micros

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


async def append(connection: aiosqlite.Connection, entry: AuditEntry) -> AuditRecord:
    """Store ``entry`` and return it as it will read back: with its id, time in UTC."""
    micros = to_micros(entry.time)
    cursor = await connection.execute(
        "INSERT INTO audit (time, user, role, action, target, result, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (micros, entry.user, entry.role, entry.action, entry.target, entry.result, entry.detail),
    )
    audit_id = cursor.lastrowid
    await cursor.close()
    assert audit_id is not None, "an INSERT into a rowid table always sets lastrowid"
    return AuditRecord(
        id=audit_id,
        time=from_micros(micros),
        user=entry.user,
        role=entry.role,
        action=entry.action,
        target=entry.target,
        result=entry.result,
        detail=entry.detail,
    )


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
