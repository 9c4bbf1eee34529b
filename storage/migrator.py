"""Forward-only schema migrations, recorded in ``PRAGMA user_version``.

Each ``migrations/NNNN_description.sql`` file (package data) moves the schema from
version NNNN-1 to NNNN. Each is applied in its own ``BEGIN IMMEDIATE`` transaction that
also sets ``user_version``, so a crash leaves the file at the old version or the new
one, never between. ``user_version`` lives in the file header: no bookkeeping table.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import aiosqlite

from murmur.storage.connection import translate_sqlite_error
from murmur.storage.errors import StoreError, StoreOpenError, StoreVersionError

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<description>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file: the version it produces and its SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> tuple[str, ...]:
    """Split an SQL script into single statements (``sqlite3`` executes one at a time).

    ``executescript`` would do it, but it commits any open transaction first, which
    would break the one-transaction-per-migration rule.

    Raises:
        ValueError: the script ends with an unterminated statement.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    leftover = [line for line in pending.splitlines() if line.strip()]
    if any(not line.lstrip().startswith("--") for line in leftover):
        raise ValueError(f"unterminated SQL statement: {pending.strip()!r}")
    return tuple(statements)


@cache
def load_migrations() -> tuple[Migration, ...]:
    """All migrations shipped with this package, in version order.

    Raises:
        RuntimeError: the files are misnamed or their versions are not 1, 2, ..., N.
    """
    found: list[Migration] = []
    for entry in (resources.files("murmur.storage") / "migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_description.sql")
        statements = split_statements(entry.read_text(encoding="utf-8"))
        found.append(Migration(int(match["version"]), entry.name, statements))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps, found {versions}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this build of murmur creates and understands."""
    return load_migrations()[-1].version


async def read_schema_version(connection: aiosqlite.Connection) -> int:
    """The schema version recorded in the file (0 for a new, empty file)."""
    rows = await connection.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def apply_migrations(
    connection: aiosqlite.Connection, path: Path, *, target_version: int | None = None
) -> int:
    """Bring the store up to ``target_version`` (default: the latest) and return it.

    Safe against another process migrating the same file at the same moment: each step
    re-reads the version after taking the write lock.

    Raises:
        StoreVersionError: the file is newer than this code knows.
        StoreCorruptError: SQLite found the file damaged.
        StoreOpenError: a migration failed.
        ValueError: ``target_version`` is not a known version.
    """
    migrations = load_migrations()
    latest = migrations[-1].version
    target = latest if target_version is None else target_version
    if not 0 <= target <= latest:
        raise ValueError(f"target_version must be between 0 and {latest}, got {target}")
    try:
        current = await read_schema_version(connection)
    except sqlite3.Error as error:
        raise _open_error(path, "reading the schema version", error) from error
    if current > latest:
        raise StoreVersionError(path, current, latest)
    for migration in migrations[current:target]:
        try:
            current = await _apply_one(connection, path, migration, latest)
        except sqlite3.Error as error:
            raise _open_error(path, f"migration {migration.name}", error) from error
    return current


async def _apply_one(
    connection: aiosqlite.Connection, path: Path, migration: Migration, latest: int
) -> int:
    """Apply one migration unless another process already did; return the new version."""
    await connection.execute("BEGIN IMMEDIATE")
    try:
        current = await read_schema_version(connection)
        if current > latest:
            raise StoreVersionError(path, current, latest)
        if current == 0 and await _has_tables(connection):
            raise StoreOpenError(
                path, "it is an SQLite database of some other program, not a murmur store"
            )
        if current < migration.version:
            for statement in migration.statements:
                await connection.execute(statement)
            await connection.execute(f"PRAGMA user_version = {migration.version}")
            current = migration.version
        await connection.commit()
    except BaseException:
        await connection.rollback()
        raise
    return current


async def _has_tables(connection: aiosqlite.Connection) -> bool:
    rows = await connection.execute_fetchall("SELECT 1 FROM sqlite_master LIMIT 1")
    return bool(list(rows))


def _open_error(path: Path, step: str, error: sqlite3.Error) -> StoreError:
    return translate_sqlite_error(path, error) or StoreOpenError(path, f"{step} failed: {error}")
