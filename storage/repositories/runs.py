"""The ``runs`` table: attempts of jobs on this node, as the node last recorded them."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import aiosqlite

from murmur.storage.errors import RecordNotFoundError
from murmur.storage.records import TERMINAL_RUN_STATES, RunRecord
from murmur.storage.timestamps import (
    from_micros,
    optional_from_micros,
    optional_to_micros,
    to_micros,
)

_FIELDS = (
    "id",
    "job_id",
    "attempt",
    "node",
    "state",
    "gpu_indices",
    "container_id",
    "pid",
    "pid_start_time",
    "exit_code",
    "reason",
    "term",
    "sequence",
    "created_at",
    "started_at",
    "finished_at",
    "runtime",
)
_COLUMNS = ", ".join(_FIELDS)
_UPSERT = (
    f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELDS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{field} = excluded.{field}" for field in _FIELDS if field != "id")
)
_TERMINAL_PLACEHOLDERS = ", ".join("?" for _ in TERMINAL_RUN_STATES)


def _to_row(record: RunRecord) -> tuple[object, ...]:
    return (
        record.id,
        record.job_id,
        record.attempt,
        record.node,
        record.state,
        json.dumps(list(record.gpu_indices)),
        record.container_id,
        record.pid,
        record.pid_start_time,
        record.exit_code,
        record.reason,
        record.term,
        record.sequence,
        to_micros(record.created_at),
        optional_to_micros(record.started_at),
        optional_to_micros(record.finished_at),
        record.runtime,
    )


def _from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        job_id=row["job_id"],
        attempt=row["attempt"],
        node=row["node"],
        state=row["state"],
        gpu_indices=tuple(int(index) for index in json.loads(row["gpu_indices"])),
        container_id=row["container_id"],
        pid=row["pid"],
        pid_start_time=row["pid_start_time"],
        exit_code=row["exit_code"],
        reason=row["reason"],
        term=row["term"],
        sequence=row["sequence"],
        created_at=from_micros(row["created_at"]),
        started_at=optional_from_micros(row["started_at"]),
        finished_at=optional_from_micros(row["finished_at"]),
        runtime=row["runtime"],
    )


async def upsert(connection: aiosqlite.Connection, record: RunRecord) -> None:
    """Insert the run, or replace every field of the stored run with the same id."""
    await connection.execute(_UPSERT, _to_row(record))


async def get(connection: aiosqlite.Connection, run_id: str) -> RunRecord:
    """The run with id ``run_id``.

    Raises:
        RecordNotFoundError: no such run.
    """
    rows = list(
        await connection.execute_fetchall(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    )
    if not rows:
        raise RecordNotFoundError("run", run_id)
    return _from_row(rows[0])


async def list_runs(
    connection: aiosqlite.Connection, *, job_id: str | None, active_only: bool
) -> list[RunRecord]:
    """Runs in creation order, optionally of one job, optionally only non-terminal ones."""
    conditions: list[str] = []
    parameters: list[object] = []
    if job_id is not None:
        conditions.append("job_id = ?")
        parameters.append(job_id)
    if active_only:
        conditions.append(f"state NOT IN ({_TERMINAL_PLACEHOLDERS})")
        parameters.extend(sorted(TERMINAL_RUN_STATES))
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM runs {where} ORDER BY created_at, id", parameters
    )
    return [_from_row(row) for row in rows]


async def list_ended_since(connection: aiosqlite.Connection, since: datetime) -> list[RunRecord]:
    """Runs that ended at or after ``since``, in the order they ended."""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM runs WHERE finished_at >= ? ORDER BY finished_at, id",
        (to_micros(since),),
    )
    return [_from_row(row) for row in rows]
