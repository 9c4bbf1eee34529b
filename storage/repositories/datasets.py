"""The ``datasets`` table: datasets held on this node's disks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from murmur.storage.errors import DatasetExistsError, RecordNotFoundError
from murmur.storage.records import DatasetRecord
from murmur.storage.timestamps import from_micros, to_micros

_COLUMNS = "name, path, size_bytes, file_count, manifest_sha256, added_at, added_by"


def _from_row(row: sqlite3.Row) -> DatasetRecord:
    return DatasetRecord(
        name=row["name"],
        path=Path(row["path"]),
        size_bytes=row["size_bytes"],
        file_count=row["file_count"],
        manifest_sha256=row["manifest_sha256"],
        added_at=from_micros(row["added_at"]),
        added_by=row["added_by"],
    )


async def insert(connection: aiosqlite.Connection, record: DatasetRecord) -> None:
    """Register a dataset.

    Raises:
        DatasetExistsError: a dataset with that name is already registered.
    """
    try:
        await connection.execute(
            f"INSERT INTO datasets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.name,
                str(record.path),
                record.size_bytes,
                record.file_count,
                record.manifest_sha256,
                to_micros(record.added_at),
                record.added_by,
            ),
        )
    except sqlite3.IntegrityError as error:
        if error.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
            raise DatasetExistsError(record.name) from error
        raise


async def get(connection: aiosqlite.Connection, name: str) -> DatasetRecord:
    """The dataset called ``name``.

    Raises:
        RecordNotFoundError: no such dataset.
    """
    rows = list(
        await connection.execute_fetchall(
            f"SELECT {_COLUMNS} FROM datasets WHERE name = ?", (name,)
        )
    )
    if not rows:
        raise RecordNotFoundError("dataset", name)
    return _from_row(rows[0])


async def delete(connection: aiosqlite.Connection, name: str) -> bool:
    """Unregister a dataset (its files are not touched); False when none had the name."""
    cursor = await connection.execute("DELETE FROM datasets WHERE name = ?", (name,))
    return cursor.rowcount > 0


async def list_all(connection: aiosqlite.Connection) -> list[DatasetRecord]:
    """Every dataset on this node, by name."""
    rows = await connection.execute_fetchall(f"SELECT {_COLUMNS} FROM datasets ORDER BY name")
    return [_from_row(row) for row in rows]
