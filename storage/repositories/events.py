"""The ``events`` table: the node's append-only log of things that happened."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import aiosqlite

from murmur.storage.records import EventRecord
from murmur.storage.timestamps import from_micros, to_micros

_COLUMNS = "id, time, kind, subject, message, job_state"


def _from_row(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        id=row["id"],
        time=from_micros(row["time"]),
        kind=row["kind"],
        subject=row["subject"],
        message=row["message"],
        job_state=row["job_state"],
    )


async def append(
    connection: aiosqlite.Connection,
    *,
    time: datetime,
    kind: str,
    subject: str,
    message: str,
    job_state: str,
) -> EventRecord:
    """Append an event and return it as it will read back: with its id, time in UTC."""
    micros = to_micros(time)
    cursor = await connection.execute(
        "INSERT INTO events (time, kind, subject, message, job_state) VALUES (?, ?, ?, ?, ?)",
        (micros, kind, subject, message, job_state),
    )
    event_id = cursor.lastrowid
    await cursor.close()
    assert event_id is not None, "an INSERT into a rowid table always sets lastrowid"
    return EventRecord(event_id, from_micros(micros), kind, subject, message, job_state)


MAX_EVENT_ID = 2**63 - 1
"""Largest id SQLite can hold (its integers are signed 64-bit); a wire id may be larger."""


async def list_since(
    connection: aiosqlite.Connection, *, since_id: int, subject: str | None, limit: int
) -> list[EventRecord]:
    """Up to ``limit`` events with id greater than ``since_id``, oldest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if since_id >= MAX_EVENT_ID:  # beyond every id: SQLite cannot even take the number
        return []
    subject_condition = "" if subject is None else "AND subject = ?"
    parameters: list[object] = [since_id] if subject is None else [since_id, subject]
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM events WHERE id > ? {subject_condition} ORDER BY id LIMIT ?",
        [*parameters, limit],
    )
    return [_from_row(row) for row in rows]
