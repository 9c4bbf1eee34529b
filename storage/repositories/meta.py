"""The ``meta`` table: small key/value facts about this node (its name, its id, ...)."""

from __future__ import annotations

import aiosqlite


async def get_value(connection: aiosqlite.Connection, key: str) -> str | None:
    """The value stored under ``key``, or ``None``."""
    rows = list(await connection.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,)))
    return str(rows[0]["value"]) if rows else None


async def set_value(connection: aiosqlite.Connection, key: str, value: str) -> None:
    """Store ``value`` under ``key``, replacing any previous value."""
    await connection.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def delete_value(connection: aiosqlite.Connection, key: str) -> None:
    """Remove ``key`` (nothing happens if it is not there)."""
    await connection.execute("DELETE FROM meta WHERE key = ?", (key,))
