"""Backups of a data dir (storage/backup.py): an online copy of the store that is one
consistent moment however busy the writer, every file checked against the manifest's
SHA-256 on the way back, and a restored store that drops its Raft state."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from murmur.storage import BackupCorruptError, RaftEntryRecord, RaftSnapshotRecord, Store
from murmur.storage.backup import (
    MANIFEST_NAME,
    BackupManifest,
    backup_data_dir,
    extract_backup,
    install_backup,
    prepare_restored_store,
)


def _entry(index: int, term: int, voters: tuple[str, ...] = ()) -> RaftEntryRecord:
    kind = "voters" if voters else "command"
    return RaftEntryRecord(index=index, term=term, kind=kind, data=b"x", voters=voters)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    path.mkdir()
    (path / "identity.pem").write_bytes(b"-----BEGIN KEY-----\nnode key\n")
    (path / "ca").mkdir()
    (path / "ca" / "ca.key").write_bytes(b"ca key")
    (path / "ca" / "ca.crt").write_bytes(b"ca cert")
    (path / "runs").mkdir()
    (path / "runs" / "launch.json").write_text("{}")
    return path


async def _backup(data_dir: Path, out: Path) -> BackupManifest:
    return await backup_data_dir(
        data_dir, out, node="node-3", murmur_version="0.1.0", include=("identity.pem", "ca")
    )


def _events_in(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM events ORDER BY id")]


async def test_an_online_backup_holds_every_commit_so_far_while_the_writer_goes_on(
    data_dir: Path, tmp_path: Path
) -> None:
    async with await Store.open(data_dir / "murmur.db") as store:
        for index in range(200):  # in the WAL: the main file alone would lack them
            await store.append_event(kind="test", subject="s", message=str(index))
        assert (data_dir / "murmur.db-wal").stat().st_size > 0
        stop = asyncio.Event()

        async def write_on() -> int:
            written = 0
            while not stop.is_set():
                await store.append_event(kind="test", subject="s", message="more")
                written += 1
            return written

        writer = asyncio.create_task(write_on())
        try:
            manifests = [await _backup(data_dir, tmp_path / f"b{i}.tar.gz") for i in range(3)]
        finally:
            stop.set()
            written = await writer
    assert written > 0, "the writer was not held up by the backups"
    assert [m.node for m in manifests] == ["node-3"] * 3
    for index in range(3):
        extracted = extract_backup(tmp_path / f"b{index}.tar.gz", tmp_path / f"x{index}")
        ids = _events_in(tmp_path / f"x{index}" / "murmur.db")
        # One moment of the store: every commit before the backup, and no gap.
        assert ids == list(range(1, len(ids) + 1))
        assert len(ids) >= 200
        assert extracted.schema_version > 0
    # The copy is one file, out of WAL mode.
    with sqlite3.connect(tmp_path / "x0" / "murmur.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


async def test_the_manifest_names_every_file_with_its_sha256_and_the_raft_state(
    data_dir: Path, tmp_path: Path
) -> None:
    async with await Store.open(data_dir / "murmur.db") as store:
        await store.save_raft(
            hard_state=(7, "node-1"),
            entries=[_entry(1, 0, ("node-1",)), _entry(2, 3, ("node-1", "node-3")), _entry(3, 7)],
        )
    out = tmp_path / "backup.tar.gz"
    manifest = await _backup(data_dir, out)
    assert out.stat().st_mode & 0o777 == 0o600, "it holds the node's private key"
    assert sorted(f.path for f in manifest.files) == [
        "ca/ca.crt",
        "ca/ca.key",
        "identity.pem",
        "murmur.db",
    ], "runs/ and the rest of the data dir are not the node's store"
    assert (manifest.raft.term, manifest.raft.last_index) == (7, 3)
    assert manifest.raft.voters == ("node-1", "node-3")
    assert manifest.was_voter
    assert not manifest.was_lone_voter
    extracted = tmp_path / "extracted"
    assert extract_backup(out, extracted) == manifest
    for name in ("identity.pem", "ca/ca.key", "ca/ca.crt"):
        assert (extracted / name).read_bytes() == (data_dir / name).read_bytes()
        assert (extracted / name).stat().st_mode & 0o077 == 0


async def test_a_lone_voter_is_told_apart_from_a_node_that_never_voted(
    data_dir: Path, tmp_path: Path
) -> None:
    async with await Store.open(data_dir / "murmur.db") as store:
        await store.save_raft(
            snapshot=RaftSnapshotRecord(last_term=2, last_index=9, voters=("node-3",), data=b"")
        )
    lone = await _backup(data_dir, tmp_path / "lone.tar.gz")
    assert (lone.raft.last_index, lone.raft.voters) == (9, ("node-3",))
    assert lone.was_lone_voter
    (data_dir / "murmur.db").unlink()
    async with await Store.open(data_dir / "murmur.db"):
        pass
    never = await _backup(data_dir, tmp_path / "never.tar.gz")
    assert (never.raft.voters, never.was_voter, never.was_lone_voter) == ((), False, False)


def _archive_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _rebuilt(path: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """The archive at ``path`` rewritten with members replaced (bytes), dropped (None)
    or added; the manifest as it was unless changed too."""
    with tarfile.open(path, "r:gz") as source:
        members = [(m.name, source.extractfile(m).read()) for m in source.getmembers()]  # type: ignore[union-attr]
    names = [name for name, _ in members]
    contents = dict(members)
    for name, data in change.items():
        if data is None:
            names.remove(name)
        else:
            if name not in contents:
                names.append(name)
            contents[name] = data
    with tarfile.open(out, "w:gz") as target:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(contents[name])
            target.addfile(info, io.BytesIO(contents[name]))
    return out


async def test_damaged_or_tampered_backups_are_refused_and_nothing_is_left(
    data_dir: Path, tmp_path: Path
) -> None:
    async with await Store.open(data_dir / "murmur.db"):
        pass
    good = tmp_path / "good.tar.gz"
    await _backup(data_dir, good)
    raw = _archive_bytes(good)
    with tarfile.open(good, "r:gz") as source:
        manifest = json.loads(source.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
    escaping = dict(manifest, files=[*manifest["files"], {**manifest["files"][0], "path": "../x"}])
    newer = dict(manifest, format=99)
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    cases = {
        "a flipped byte": bytes(flipped),
        "truncated": raw[: len(raw) // 2],
        "not a backup": gzip.compress(b"hello"),
        # Recompressed, so gzip's CRC holds: the manifest's SHA-256 catches it.
        "a file swapped": _rebuilt(
            good, tmp_path / "swapped.tar.gz", {"identity.pem": b"another key"}
        ).read_bytes(),
        "a file missing": _rebuilt(
            good, tmp_path / "missing.tar.gz", {"ca/ca.key": None}
        ).read_bytes(),
        "a file added": _rebuilt(good, tmp_path / "added.tar.gz", {"ca/extra": b"x"}).read_bytes(),
        "an escaping path": _rebuilt(
            good, tmp_path / "escaping.tar.gz", {MANIFEST_NAME: json.dumps(escaping).encode()}
        ).read_bytes(),
        "a newer format": _rebuilt(
            good, tmp_path / "newer.tar.gz", {MANIFEST_NAME: json.dumps(newer).encode()}
        ).read_bytes(),
    }
    for what, data in cases.items():
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(data)
        into = tmp_path / "into"
        with pytest.raises(BackupCorruptError) as caught:
            extract_backup(bad, into)
        assert "is not an intact murmur backup" in str(caught.value), what
        assert not into.exists(), f"{what}: a refused backup leaves nothing behind"
        assert not (tmp_path / "x").exists()
    extract_backup(good, tmp_path / "into")  # the good one still reads


async def test_a_restored_store_drops_its_raft_state_and_rejoins_until_caught_up(
    data_dir: Path, tmp_path: Path
) -> None:
    async with await Store.open(data_dir / "murmur.db") as store:
        await store.save_raft(
            hard_state=(4, "node-1"),
            snapshot=RaftSnapshotRecord(last_term=3, last_index=5, voters=("node-1",), data=b"s"),
            entries=[_entry(6, 4)],
        )
        await store.set_meta("audit-incarnation", "old")
        await store.append_event(kind="job", subject="j1", message="ran here")
    out = tmp_path / "backup.tar.gz"
    manifest = await _backup(data_dir, out)
    extracted = tmp_path / "extracted"
    extract_backup(out, extracted)
    await prepare_restored_store(
        extracted / "murmur.db", forget_raft=True, reset_meta={"audit-incarnation": ""}
    )
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (restored_dir / "murmur.db-wal").write_bytes(b"an old store's WAL")
    (restored_dir / "ca").mkdir()
    (restored_dir / "ca" / "stale").write_bytes(b"")
    install_backup(extracted, restored_dir, manifest)
    assert not (restored_dir / "murmur.db-wal").exists()
    assert not (restored_dir / "ca" / "stale").exists()
    assert (restored_dir / "ca" / "ca.key").read_bytes() == b"ca key"
    async with await Store.open(restored_dir / "murmur.db") as store:
        state = await store.load_raft()
        assert (state.term, state.voted_for, state.snapshot, state.entries) == (0, None, None, ())
        assert state.rejoining
        assert await store.get_meta("audit-incarnation") == ""
        assert [e.subject for e in await store.list_events()] == ["j1"], "history kept"
        # Caught up: the mark goes in the transaction that stores what Raft wrote.
        await store.save_raft(entries=[_entry(1, 5, ("node-1", "node-3"))], rejoined=True)
    async with await Store.open(restored_dir / "murmur.db") as store:
        state = await store.load_raft()
        assert not state.rejoining
        assert await store.raft_voters() == ("node-1", "node-3")


async def test_kept_raft_state_comes_back_as_it_was(data_dir: Path, tmp_path: Path) -> None:
    async with await Store.open(data_dir / "murmur.db") as store:
        await store.save_raft(hard_state=(4, "node-3"), entries=[_entry(1, 0, ("node-3",))])
    out = tmp_path / "backup.tar.gz"
    await _backup(data_dir, out)
    extract_backup(out, tmp_path / "x")
    await prepare_restored_store(tmp_path / "x" / "murmur.db", forget_raft=False, reset_meta={})
    async with await Store.open(tmp_path / "x" / "murmur.db") as store:
        state = await store.load_raft()
    assert (state.term, state.voted_for, len(state.entries), state.rejoining) == (
        4,
        "node-3",
        1,
        False,
    )
