"""The ``revocations`` table: the certificate deny list this node enforces."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from murmur.storage.records import RevocationRecord

_COLUMNS = "log_index, name, serial, revoked_at, revoked_by, reason"


def _of(row: aiosqlite.Row) -> RevocationRecord:
    return RevocationRecord(
        index=int(row["log_index"]),
        name=str(row["name"]),
        serial=str(row["serial"]),
        revoked_at_us=int(row["revoked_at"]),
        revoked_by=str(row["revoked_by"]),
        reason=str(row["reason"]),
    )


async def add_all(connection: aiosqlite.Connection, records: Iterable[RevocationRecord]) -> None:
    """Insert each record not stored yet; one stored with the same log index stays
    (an entry of the log never changes)."""
    await connection.executemany(
        f"INSERT OR IGNORE INTO revocations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                record.index,
                record.name,
                record.serial,
                record.revoked_at_us,
                record.revoked_by,
                record.reason,
            )
            for record in records
        ],
    )


async def list_all(connection: aiosqlite.Connection) -> list[RevocationRecord]:
    """Every revocation, in log order."""
    rows = await connection.execute_fetchall(
        f"SELECT {_COLUMNS} FROM revocations ORDER BY log_index"
    )
    return [_of(row) for row in rows]
