"""Opening, reopening and refusing store files."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from murmur.storage import (
    Store,
    StoreClosedError,
    StoreCorruptError,
    StoreOpenError,
    StoreVersionError,
)
from murmur.storage.migrator import latest_version


def _table_names(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(name) for (name,) in rows}


def _file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_garbage(path: Path) -> None:
    path.write_bytes(b"this is a text file, not an SQLite database\n" * 200)


async def test_open_creates_schema_at_latest_version(store_path: Path) -> None:
    async with await Store.open(store_path) as store:
        assert await store.schema_version() == latest_version() == 7
        assert store.path == store_path
    expected = {
        "meta", "datasets", "runs", "events", "audit", "join_tokens", "jobs", "raft_log",
        "archived_jobs", "audit_chain", "audit_anchors",
    }  # fmt: skip
    assert expected <= _table_names(store_path)


async def test_reopen_keeps_data_and_version(store_path: Path) -> None:
    async with await Store.open(store_path) as store:
        await store.set_meta("node_name", "gpu-01")
    async with await Store.open(store_path) as store:
        assert await store.schema_version() == latest_version()
        assert await store.get_meta("node_name") == "gpu-01"


async def test_connection_uses_wal_full_sync_foreign_keys_and_busy_timeout(
    store: Store,
) -> None:
    # synchronous, foreign_keys and busy_timeout are per connection, so ask the store's
    # own connection rather than a new one.
    connection = store._connection
    assert connection is not None
    pragmas = {}
    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
        rows = list(await connection.execute_fetchall(f"PRAGMA {name}"))
        pragmas[name] = rows[0][0]
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


async def test_wal_mode_is_recorded_in_the_file(store: Store, store_path: Path) -> None:
    with closing(sqlite3.connect(store_path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_new_store_file_is_private_to_its_owner(store: Store, store_path: Path) -> None:
    assert _file_mode(store_path) == 0o600


async def test_close_is_idempotent_and_checkpoints_the_wal(store_path: Path) -> None:
    store = await Store.open(store_path)
    await store.set_meta("k", "v")
    await store.close()
    await store.close()
    wal = store_path.with_name(store_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with closing(sqlite3.connect(store_path)) as other:
        assert other.execute("SELECT value FROM meta WHERE key = 'k'").fetchone() == ("v",)


async def test_use_after_close_raises_store_closed(store_path: Path) -> None:
    store = await Store.open(store_path)
    await store.close()
    with pytest.raises(StoreClosedError, match=str(store_path)):
        await store.get_meta("k")
    with pytest.raises(StoreClosedError):
        await store.set_meta("k", "v")


async def test_close_waits_for_a_write_in_flight(store_path: Path) -> None:
    store = await Store.open(store_path)
    write = asyncio.create_task(store.set_meta("k", "v"))
    await asyncio.sleep(0)  # let the write take the lock first
    await store.close()
    await write
    async with await Store.open(store_path) as reopened:
        assert await reopened.get_meta("k") == "v"


async def test_newer_schema_version_is_refused(store_path: Path) -> None:
    async with await Store.open(store_path):
        pass
    with closing(sqlite3.connect(store_path)) as raw:
        raw.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreVersionError) as refused:
        await Store.open(store_path)
    assert str(refused.value) == (
        f"store at {store_path} was written by a newer murmur (schema version 999; this "
        f"one knows up to {latest_version()}): run that murmur, or a newer one, on it"
    )
    assert refused.value.found_version == 999


async def test_garbage_file_is_refused_as_corrupt(store_path: Path) -> None:
    _write_garbage(store_path)
    with pytest.raises(StoreCorruptError, match=str(store_path)) as refused:
        await Store.open(store_path)
    assert refused.value.path == store_path


async def test_damaged_page_is_reported_as_corrupt(store_path: Path) -> None:
    async with await Store.open(store_path) as store:
        await store.set_meta("k", "v")
    with closing(sqlite3.connect(store_path)) as raw:
        (root_page,) = raw.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'events'"
        ).fetchone()
        (page_size,) = raw.execute("PRAGMA page_size").fetchone()
    with store_path.open("r+b") as file:
        file.seek((root_page - 1) * page_size)
        file.write(b"\xff" * page_size)
    async with await Store.open(store_path) as store:
        with pytest.raises(StoreCorruptError, match=str(store_path)):
            await store.list_events()
        # A failed read must not wedge the store for the tables that are intact.
        assert await store.get_meta("k") == "v"


async def test_directory_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    # Fails for root too: nobody can create a file inside a regular file.
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "store.db"
    with pytest.raises(StoreOpenError, match="is not a directory") as refused:
        await Store.open(path)
    assert refused.value.path == path
    assert str(path) in str(refused.value)


async def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreOpenError, match="does not exist"):
        await Store.open(tmp_path / "missing" / "store.db")


async def test_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()
    with pytest.raises(StoreOpenError, match="not a regular file"):
        await Store.open(tmp_path / "store.db")


def _permissions_are_enforced(directory: Path) -> bool:
    """Whether this process is refused writing a read-only directory (root usually isn't)."""
    try:
        (directory / "probe").touch()
    except PermissionError:
        return True
    (directory / "probe").unlink()
    return False


async def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir(mode=0o500)
    try:
        if not _permissions_are_enforced(directory):
            pytest.skip("this process ignores file permissions (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(StoreOpenError, match="not writable"):
            await Store.open(directory / "store.db")
    finally:
        directory.chmod(0o700)
