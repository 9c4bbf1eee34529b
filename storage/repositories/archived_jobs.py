"""The ``archived_jobs`` table: jobs the replicated queue forgot, as each voter keeps them."""

from __future__ import annotations

from collections.abc import Collection, Iterable

import aiosqlite

from murmur.storage.errors import RecordNotFoundError
from murmur.storage.records import ArchivedJobRecord
from murmur.storage.timestamps import from_micros, to_micros

_COLUMNS = "id, submit_order, user, queue, state, ended_at, archived_at, data"


def _of(row: aiosqlite.Row) -> ArchivedJobRecord:
    return ArchivedJobRecord(
        id=str(row["id"]),
        submit_order=int(row["submit_order"]),
        user=str(row["user"]),
        queue=str(row["queue"]),
        state=str(row["state"]),
        ended_at=from_micros(int(row["ended_at"])),
        archived_at=from_micros(int(row["archived_at"])),
        data=bytes(row["data"]),
    )


async def put_all(connection: aiosqlite.Connection, records: Iterable[ArchivedJobRecord]) -> None:
    """Insert each record, replacing one stored with the same id (a voter that
    replays the log archives the same job again)."""
    await connection.executemany(
        f"INSERT OR REPLACE INTO archived_jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                record.id,
                record.submit_order,
                record.user,
                record.queue,
                record.state,
                to_micros(record.ended_at),
                to_micros(record.archived_at),
                record.data,
            )
            for record in records
        ],
    )


async def get(connection: aiosqlite.Connection, job_id: str) -> ArchivedJobRecord:
    """Raises: RecordNotFoundError: no such archived job."""
    rows = list(
        await connection.execute_fetchall(
            f"SELECT {_COLUMNS} FROM archived_jobs WHERE id = ?", (job_id,)
        )
    )
    if not rows:
        raise RecordNotFoundError("archived job", job_id)
    return _of(rows[0])


async def list_page(
    connection: aiosqlite.Connection,
    *,
    after_submit_order: int,
    states: Collection[str],
    user: str | None,
    queue: str | None,
    limit: int,
) -> list[ArchivedJobRecord]:
    """Up to ``limit`` archived jobs after ``after_submit_order``, in submit order,
    matching every filter given (``states`` empty: any)."""
    where = ["submit_order > ?"]
    params: list[object] = [after_submit_order]
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params.extend(sorted(states))
    if user is not None:
        where.append("user = ?")
        params.append(user)
    if queue is not None:
        where.append("queue = ?")
        params.append(queue)
    params.append(limit)
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM archived_jobs WHERE {' AND '.join(where)} "
        "ORDER BY submit_order, id LIMIT ?",
        params,
    )
    return [_of(row) for row in rows]


async def count(connection: aiosqlite.Connection) -> int:
    rows = list(await connection.execute_fetchall("SELECT COUNT(*) AS n FROM archived_jobs"))
    return int(rows[0]["n"])
