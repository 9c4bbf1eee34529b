"""The ``jobs`` table: this node's mirror of each job that ran here, and its state."""

from __future__ import annotations

import dataclasses
import sqlite3

import aiosqlite

from murmur.storage.errors import RecordNotFoundError
from murmur.storage.records import JobRecord
from murmur.storage.timestamps import (
    from_micros,
    optional_from_micros,
    optional_to_micros,
    to_micros,
)

_FIELDS = (
    "id",
    "submit_order",
    "spec",
    "user",
    "queue",
    "state",
    "reason",
    "submitted_at",
    "updated_at",
    "attempts",
    "exit_code",
    "not_before",
    "cancel_reason",
    "idempotency_key",
)
_COLUMNS = ", ".join(_FIELDS)
_UPDATABLE = [f for f in _FIELDS if f not in {"id", "submit_order", "spec", "user", "queue",
                                              "submitted_at", "idempotency_key"}]  # fmt: skip


def _to_row(record: JobRecord) -> tuple[object, ...]:
    return (
        record.id,
        record.submit_order,
        record.spec,
        record.user,
        record.queue,
        record.state,
        record.reason,
        to_micros(record.submitted_at),
        to_micros(record.updated_at),
        record.attempts,
        record.exit_code,
        optional_to_micros(record.not_before),
        record.cancel_reason,
        record.idempotency_key,
    )


def _from_row(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        submit_order=row["submit_order"],
        spec=bytes(row["spec"]),
        user=row["user"],
        queue=row["queue"],
        state=row["state"],
        reason=row["reason"],
        submitted_at=from_micros(row["submitted_at"]),
        updated_at=from_micros(row["updated_at"]),
        attempts=row["attempts"],
        exit_code=row["exit_code"],
        not_before=optional_from_micros(row["not_before"]),
        cancel_reason=row["cancel_reason"],
        idempotency_key=row["idempotency_key"],
    )


async def insert(connection: aiosqlite.Connection, record: JobRecord) -> JobRecord:
    """Inserts a new job, assigning the next submit_order; returns it as stored."""
    rows = await connection.execute_fetchall("SELECT COALESCE(MAX(submit_order), 0) FROM jobs")
    stored = dataclasses.replace(record, submit_order=int(next(iter(rows))[0]) + 1)
    await connection.execute(
        f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELDS)})",
        _to_row(stored),
    )
    return stored


async def update(connection: aiosqlite.Connection, record: JobRecord) -> None:
    """Writes the mutable fields (state, reason, attempts, ...) of an existing job."""
    values = dict(zip(_FIELDS, _to_row(record), strict=True))
    cursor = await connection.execute(
        f"UPDATE jobs SET {', '.join(f'{f} = ?' for f in _UPDATABLE)} WHERE id = ?",
        [*(values[f] for f in _UPDATABLE), record.id],
    )
    changed = cursor.rowcount
    await cursor.close()
    if changed == 0:
        raise RecordNotFoundError("job", record.id)


async def upsert(connection: aiosqlite.Connection, record: JobRecord) -> None:
    """Writes the mutable fields of the stored job with ``record.id``, or inserts it
    (taking the next submit_order) when there is none: a job placed here by the leader
    gets its row with its first run, and a retried one that comes back finds it."""
    try:
        await update(connection, record)
    except RecordNotFoundError:
        await insert(connection, record)


async def get(connection: aiosqlite.Connection, job_id: str) -> JobRecord:
    rows = list(
        await connection.execute_fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    )
    if not rows:
        raise RecordNotFoundError("job", job_id)
    return _from_row(rows[0])
