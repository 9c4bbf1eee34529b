"""The migration runner: file set, upgrading an old store, atomic steps."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import pytest

from murmur.storage import AuditEntry, Store, StoreOpenError
from murmur.storage.connection import connect
from murmur.storage.migrator import (
    Migration,
    _apply_one,
    apply_migrations,
    latest_version,
    load_migrations,
    read_schema_version,
    split_statements,
)
from murmur.storage.timestamps import to_micros

_MOMENT = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def test_migration_files_are_numbered_from_one_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert [m.name for m in migrations][:2] == ["0001_initial.sql", "0002_join_tokens.sql"]
    assert all(migration.statements for migration in migrations)


def test_split_statements_keeps_semicolons_inside_strings() -> None:
    script = "-- a comment\nCREATE TABLE t (x TEXT);\nINSERT INTO t VALUES ('a;b');\n-- end\n"
    assert split_statements(script) == (
        "-- a comment\nCREATE TABLE t (x TEXT);",
        "INSERT INTO t VALUES ('a;b');",
    )


def test_split_statements_rejects_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("CREATE TABLE t (x TEXT);\nCREATE TABLE u (y TEXT)\n")


async def _create_version_1_store(path: Path) -> None:
    connection = await connect(path)
    try:
        assert await apply_migrations(connection, path, target_version=1) == 1
    finally:
        await connection.close()


async def test_version_1_store_is_upgraded_and_keeps_its_data(store_path: Path) -> None:
    await _create_version_1_store(store_path)
    with closing(sqlite3.connect(store_path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master")}
        assert "join_tokens" not in tables
        with raw:
            raw.execute("INSERT INTO meta (key, value) VALUES ('node_name', 'gpu-07')")
            raw.execute(
                "INSERT INTO audit (time, user, role, action, target, result, detail) "
                "VALUES (?, 'ada', 'admin', 'dataset.add', 'imagenet', 'ok', '')",
                (to_micros(_MOMENT),),
            )
            raw.execute(
                "INSERT INTO events (time, kind, subject, message, job_state) "
                "VALUES (0, 'job', 'j-1', 'submitted', 'pending')"
            )

    async with await Store.open(store_path) as store:
        assert await store.schema_version() == latest_version()
        assert await store.get_meta("node_name") == "gpu-07"
        (old_audit,) = await store.list_audit()
        assert old_audit.user == "ada"
        assert old_audit.time == _MOMENT
        (old_event,) = await store.list_events(subject="j-1")
        assert old_event.message == "submitted"
        # The tables of version 2 work on the upgraded file, and ids continue.
        await store.add_join_token(
            token_id="t1",
            secret_sha256="ab" * 32,
            created_at=_MOMENT,
            expires_at=datetime(2025, 3, 2, tzinfo=UTC),
            created_by="ada",
        )
        new_audit = await store.append_audit(
            AuditEntry(_MOMENT, "ada", "admin", "token.create", "t1", "ok", "")
        )
        assert new_audit.id == old_audit.id + 1


async def test_target_version_outside_known_range_is_rejected(store_path: Path) -> None:
    connection = await connect(store_path)
    try:
        with pytest.raises(ValueError, match="target_version"):
            await apply_migrations(connection, store_path, target_version=latest_version() + 1)
        assert await read_schema_version(connection) == 0
    finally:
        await connection.close()


async def test_failed_migration_leaves_no_trace(store_path: Path) -> None:
    await _create_version_1_store(store_path)
    broken = Migration(
        version=2,
        name="0002_broken.sql",
        statements=("CREATE TABLE half_done (x TEXT);", "THIS IS NOT SQL;"),
    )
    connection = await connect(store_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await _apply_one(connection, store_path, broken, latest=2)
        assert await read_schema_version(connection) == 1
        assert not await _has_table(connection, "half_done")
    finally:
        await connection.close()


async def test_migration_error_is_reported_as_store_open_error(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (Migration(version=1, name="0001_broken.sql", statements=("NOT SQL;",)),)
    monkeypatch.setattr("murmur.storage.migrator.load_migrations", lambda: broken)
    with pytest.raises(StoreOpenError, match=r"migration 0001_broken\.sql failed"):
        await Store.open(store_path)
    with closing(sqlite3.connect(store_path)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (0,)


async def _has_table(connection: aiosqlite.Connection, name: str) -> bool:
    rows = await connection.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    )
    return bool(list(rows))


async def test_sqlite_file_of_another_program_is_refused(store_path: Path) -> None:
    with closing(sqlite3.connect(store_path)) as raw:
        raw.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, caption TEXT)")
    with pytest.raises(StoreOpenError, match="not a murmur store"):
        await Store.open(store_path)
    with closing(sqlite3.connect(store_path)) as raw:
        tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master")}
    assert tables == {"photos"}


async def test_two_stores_opening_a_new_file_at_once_both_succeed(store_path: Path) -> None:
    # Each Store has its own connection (its own thread), like two processes would.
    opened = await asyncio.gather(
        Store.open(store_path), Store.open(store_path), return_exceptions=True
    )
    stores = [result for result in opened if isinstance(result, Store)]
    try:
        assert len(stores) == 2, f"an open failed: {opened}"
        first, second = stores
        assert await first.schema_version() == await second.schema_version() == latest_version()
        await first.set_meta("k", "from first")
        assert await second.get_meta("k") == "from first"
    finally:
        for store in stores:
            await store.close()


async def test_many_stores_opening_new_files_at_once_never_see_a_locked_database(
    tmp_path: Path,
) -> None:
    """Two connections switching a brand-new file to WAL at once: SQLite answers one
    "database is locked" without waiting out busy_timeout (this test failed 41 opens
    in 450 before the switch was retried; the one above failed now and then in CI)."""
    failures = []
    for round_number in range(40):
        path = tmp_path / f"store-{round_number}.db"
        opened = await asyncio.gather(*(Store.open(path) for _ in range(3)), return_exceptions=True)
        for result in opened:
            if isinstance(result, Store):
                await result.close()
            else:
                failures.append(result)
    assert failures == []
