"""Opening the SQLite file: path checks, connection settings, sqlite3 error translation."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiosqlite

from murmur.storage.errors import StoreCorruptError, StoreError, StoreOpenError

BUSY_TIMEOUT_S = 5.0
"""How long a statement waits for another process's lock before failing."""

_FILE_MODE = 0o600
"""The store holds audit records and token hashes: readable by the node's user only.
SQLite gives its -wal and -shm files the mode of the database file."""

_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def translate_sqlite_error(path: Path, error: sqlite3.Error) -> StoreError | None:
    """The store error for an sqlite3 error that means a damaged file, else ``None``.

    Other sqlite3 errors are bugs in our SQL and propagate as they are.
    """
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPTION_CODES:
        return StoreCorruptError(path, str(error))
    return None


def check_store_path(path: Path) -> None:
    """Refuse, with a message a user can act on, a path SQLite could not write.

    Raises:
        StoreOpenError: the directory is missing, not a directory, or not writable, or
            the path exists but is not a writable regular file.
    """
    directory = path.parent
    if not directory.exists():
        raise StoreOpenError(path, f"directory {directory} does not exist")
    if not directory.is_dir():
        raise StoreOpenError(path, f"{directory} is not a directory")
    # SQLite creates the -wal and -shm files next to the database, so the directory
    # must be writable even when the database file already exists.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreOpenError(path, f"directory {directory} is not writable by this user")
    if path.exists():
        if not path.is_file():
            raise StoreOpenError(path, "it exists and is not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreOpenError(path, "the file is not readable and writable by this user")


def create_private_file(path: Path) -> None:
    """Create an empty store file with mode 0600 unless one exists (SQLite accepts it).

    Raises:
        StoreOpenError: the file cannot be created.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    except FileExistsError:
        return
    except OSError as error:
        raise StoreOpenError(path, error.strerror or str(error)) from error
    os.close(descriptor)


WAL_RETRY_SECONDS = 0.05


async def _enable_wal(connection: aiosqlite.Connection) -> str:
    """Switches the file to WAL and returns the journal mode it is in.

    Two connections switching a brand-new file at once: SQLite answers the loser
    "database is locked" at once, without waiting out ``busy_timeout`` (the switch
    needs an exclusive lock, and the busy handler is not consulted for it; two nodes
    or a node and ``murmur`` opening one store hit it, and so did the test suite).
    So the switch is retried until ``BUSY_TIMEOUT_S`` has passed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_TIMEOUT_S
    while True:
        try:
            rows = await connection.execute_fetchall("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(WAL_RETRY_SECONDS)
            continue
        return str(next(iter(rows))[0]).lower()


async def connect(path: Path) -> aiosqlite.Connection:
    """Open ``path`` and apply the settings every store connection needs.

    The connection has no implicit transactions (``isolation_level=None``): the store
    issues ``BEGIN IMMEDIATE`` and ``COMMIT`` itself.

    Raises:
        StoreOpenError: the file cannot be opened, or WAL cannot be enabled on it.
        StoreCorruptError: the file is not an SQLite database.
    """
    check_store_path(path)
    create_private_file(path)
    try:
        connection = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise StoreOpenError(path, str(error)) from error
    try:
        connection.row_factory = sqlite3.Row
        await _configure(connection, path)
    except BaseException:
        await connection.close()
        raise
    return connection


async def _configure(connection: aiosqlite.Connection, path: Path) -> None:
    try:
        await connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        journal_mode = await _enable_wal(connection)
        await connection.execute("PRAGMA synchronous = FULL")
        await connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as error:
        translated = translate_sqlite_error(path, error)
        raise (translated or StoreOpenError(path, str(error))) from error
    if journal_mode != "wal":
        raise StoreOpenError(
            path,
            f"SQLite could not enable WAL mode here (got {journal_mode!r}); "
            "use a local filesystem for the data directory",
        )
