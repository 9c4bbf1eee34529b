"""Backups of a node's data dir: one file with a consistent copy of the store, taken
while the node runs, and the node's identity and CA, checked on the way back.

Format (``murmur node backup``): a gzip-compressed tar archive whose first member is
``manifest.json`` (:class:`BackupManifest`: format version, node, time, murmur
version, schema version, a summary of the Raft state, and every other member with
its size, mode and SHA-256), then those members:

- ``murmur.db``: the store, copied with SQLite's online backup API in one step under
  one read transaction, so it is one consistent moment of the store however busy the
  daemon is (WAL readers do not block its writers), then switched out of WAL mode:
  one self-contained file, checked with ``PRAGMA integrity_check`` before it is
  archived.
- the data dir's files the caller names (``identity.pem``, ``ca/``...), as they are.

Nothing in the archive is trusted on the way back: :func:`extract_backup` takes only
regular files named in the manifest, under plain relative paths, checks each one's
size and SHA-256 (and gzip checks its CRC), and refuses an archive that lacks one or
holds anything else. The archive holds the node's private key (and on a CA node the
CA's): it is written 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

from murmur.storage.connection import BUSY_TIMEOUT_S
from murmur.storage.errors import BackupCorruptError, BackupError
from murmur.storage.store import Store

BACKUP_FORMAT = 1
"""Version of the archive layout; a restore refuses a format it does not know."""

MANIFEST_NAME = "manifest.json"
STORE_NAME = "murmur.db"
"""The store's name, in the data dir and in the archive."""

STORE_SIDE_FILES = ("murmur.db-wal", "murmur.db-shm")
"""SQLite's files beside a store. A restore deletes them: SQLite would replay an old
store's WAL into the restored file (nothing ties a WAL to its database)."""

_CHUNK = 1 << 20
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class BackupFile:
    """One member of the archive besides the manifest."""

    path: str
    """Relative POSIX path in the data dir (and the archive)."""
    size: int
    mode: int
    """Permission bits (0600, 0644...)."""
    sha256: str


@dataclass(frozen=True)
class RaftSummary:
    """The Raft state the store held when it was copied."""

    term: int
    last_index: int
    """Index of the last entry (or of the snapshot's last, with no entries after it)."""
    voters: tuple[str, ...]
    """The voter set in force at the end of the log; empty on a node that never
    held one."""


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds; ``manifest.json`` in the archive."""

    format: int
    node: str
    created_at: datetime
    murmur_version: str
    schema_version: int
    raft: RaftSummary
    files: tuple[BackupFile, ...]

    @property
    def was_voter(self) -> bool:
        return self.node in self.raft.voters

    @property
    def was_lone_voter(self) -> bool:
        """The node was its cluster's only voter: nobody else holds the job queue."""
        return self.raft.voters == (self.node,)

    def to_json(self) -> bytes:
        document = asdict(self)
        document["created_at"] = self.created_at.isoformat()
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, *, archive: Path) -> BackupManifest:
        """Raises: BackupCorruptError: not a manifest this murmur can read."""
        try:
            document = json.loads(data)
            if document.get("format") != BACKUP_FORMAT:
                raise BackupCorruptError(
                    archive,
                    f"backup format {document.get('format')!r}; this murmur reads "
                    f"format {BACKUP_FORMAT}",
                )
            raft = document["raft"]
            return cls(
                format=BACKUP_FORMAT,
                node=str(document["node"]),
                created_at=datetime.fromisoformat(document["created_at"]),
                murmur_version=str(document["murmur_version"]),
                schema_version=int(document["schema_version"]),
                raft=RaftSummary(
                    term=int(raft["term"]),
                    last_index=int(raft["last_index"]),
                    voters=tuple(str(name) for name in raft["voters"]),
                ),
                files=tuple(
                    BackupFile(
                        path=str(entry["path"]),
                        size=int(entry["size"]),
                        mode=int(entry["mode"]),
                        sha256=str(entry["sha256"]),
                    )
                    for entry in document["files"]
                ),
            )
        except BackupCorruptError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupCorruptError(archive, f"unreadable manifest ({exc})") from None


# -- taking a backup ------------------------------------------------------------------


async def backup_data_dir(
    data_dir: Path,
    out: Path,
    *,
    node: str,
    murmur_version: str,
    include: Sequence[str],
) -> BackupManifest:
    """Write a backup of ``data_dir`` to ``out`` (replaced atomically if it exists).

    Safe while the node's daemon runs: the store is read through SQLite (one read
    transaction), nothing in ``data_dir`` is written. The work runs in a thread.

    Args:
        data_dir: the node's data dir, holding ``murmur.db``.
        out: the archive to write.
        node: the node's name, for the manifest.
        murmur_version: this murmur's version, for the manifest.
        include: entries of ``data_dir`` to archive besides the store (files, or
            directories taken whole); those missing are skipped.

    Raises:
        BackupError: the store cannot be read or copied, or ``out`` cannot be written.
    """
    return await asyncio.to_thread(
        _backup_data_dir, data_dir, out, node, murmur_version, tuple(include)
    )


def _backup_data_dir(
    data_dir: Path, out: Path, node: str, murmur_version: str, include: tuple[str, ...]
) -> BackupManifest:
    source = data_dir / STORE_NAME
    if not source.is_file():
        raise BackupError(f"no store to back up: {source} does not exist")
    out = out.absolute()
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        staging.mkdir(mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot write next to {out}: {exc.strerror or exc}") from None
    try:
        copied = staging / "data"
        copied.mkdir(mode=0o700)
        schema_version, raft = copy_store(source, copied / STORE_NAME)
        files = [_describe(STORE_NAME, copied / STORE_NAME)]
        for name in include:
            for path, local in _files_under(data_dir, name):
                # Archived from a copy, hashed from it: a file replaced meanwhile (a
                # certificate renewed) cannot make the archive disagree with itself.
                files.append(_copy_file(local, copied / path, path))
        manifest = BackupManifest(
            format=BACKUP_FORMAT,
            node=node,
            created_at=datetime.now(UTC),
            murmur_version=murmur_version,
            schema_version=schema_version,
            raft=raft,
            files=tuple(files),
        )
        _write_archive(out, staging / "archive.tar.gz", manifest, copied)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def copy_store(source: Path, destination: Path) -> tuple[int, RaftSummary]:
    """Copy the store at ``source`` to a new file ``destination`` with SQLite's online
    backup API (blocking: call it from a thread). Returns the copy's schema version
    and Raft summary.

    Raises:
        BackupError: the store cannot be opened or read, or the copy is damaged.
    """
    # mode=rw: never create a store that is not there.
    uri = f"file:{quote(str(source.absolute()))}?mode=rw"
    try:
        with (
            contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as store,
            contextlib.closing(sqlite3.connect(destination)) as copy,
        ):
            # pages=-1 (the default): one step, under one read transaction, so the
            # copy is one moment of the store; the daemon's writers go on meanwhile.
            store.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"the copy of {source} is damaged: {'; '.join(problems[:5])}")
            schema_version = int(copy.execute("PRAGMA user_version").fetchone()[0])
            raft = _raft_summary(copy)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up the store {source}: {exc}") from None
    os.chmod(destination, 0o600)
    return schema_version, raft


def _raft_summary(connection: sqlite3.Connection) -> RaftSummary:
    def one(sql: str) -> Any:
        try:
            row = connection.execute(sql).fetchone()
        except sqlite3.OperationalError:  # a store from before the Raft tables
            return None
        return None if row is None else row[0]

    term = one("SELECT term FROM raft_hard_state WHERE id = 1") or 0
    last_index = one("SELECT MAX(idx) FROM raft_log") or one(
        "SELECT last_index FROM raft_snapshot WHERE id = 1"
    )
    voters = one(
        "SELECT voters FROM raft_log WHERE kind = 'voters' ORDER BY idx DESC LIMIT 1"
    ) or one("SELECT voters FROM raft_snapshot WHERE id = 1")
    return RaftSummary(
        term=int(term),
        last_index=int(last_index or 0),
        voters=tuple(sorted(str(name) for name in json.loads(voters))) if voters else (),
    )


def _files_under(data_dir: Path, name: str) -> Iterator[tuple[str, Path]]:
    """(archive path, local path) of ``name`` and, for a directory, every regular file
    under it, in a stable order; symbolic links are not followed."""
    top = data_dir / name
    if top.is_symlink() or not top.exists():
        return
    if top.is_file():
        yield name, top
        return
    for directory, subdirectories, filenames in os.walk(top):
        subdirectories.sort()
        for filename in sorted(filenames):
            local = Path(directory) / filename
            if local.is_file() and not local.is_symlink():
                yield local.relative_to(data_dir).as_posix(), local


def _copy_file(local: Path, copy: Path, path: str) -> BackupFile:
    copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        shutil.copyfile(local, copy, follow_symlinks=False)
    except OSError as exc:
        raise BackupError(f"cannot read {local}: {exc.strerror or exc}") from None
    described = _describe(path, copy)
    return BackupFile(
        path=path, size=described.size, mode=local.stat().st_mode & 0o777, sha256=described.sha256
    )


def _describe(path: str, local: Path) -> BackupFile:
    digest = hashlib.sha256()
    size = 0
    with local.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    mode = local.stat().st_mode & 0o777
    return BackupFile(path=path, size=size, mode=mode, sha256=digest.hexdigest())


def _write_archive(out: Path, temporary: Path, manifest: BackupManifest, copied: Path) -> None:
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as archive:
                manifest_bytes = manifest.to_json()
                archive.addfile(
                    _member_info(MANIFEST_NAME, 0o600, len(manifest_bytes)),
                    BytesIO(manifest_bytes),
                )
                for entry in manifest.files:
                    with (copied / entry.path).open("rb") as handle:
                        archive.addfile(_member_info(entry.path, entry.mode, entry.size), handle)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, out)
        _fsync_directory(out.parent)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc.strerror or exc}") from None


def _member_info(name: str, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    return info


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- reading one back -----------------------------------------------------------------


def extract_backup(archive: Path, into: Path) -> BackupManifest:
    """Check the backup ``archive`` and write its files under the new directory
    ``into`` (blocking). Fails closed: any doubt is an error, and ``into`` is then
    removed.

    Raises:
        BackupError: ``archive`` cannot be read or ``into`` cannot be written.
        BackupCorruptError: not a backup, or one whose files do not match its
            manifest (damaged, truncated, tampered with).
    """
    try:
        into.mkdir(mode=0o700)
    except OSError as exc:
        raise BackupError(f"cannot create {into}: {exc.strerror or exc}") from None
    try:
        return _extract(archive, into)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise


def _extract(archive: Path, into: Path) -> BackupManifest:
    try:
        handle = archive.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {archive}: {exc.strerror or exc}") from None
    try:
        with handle, tarfile.open(fileobj=handle, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isfile():
                raise BackupCorruptError(archive, f"its first member is not {MANIFEST_NAME}")
            if first.size > _MAX_MANIFEST_BYTES:
                raise BackupCorruptError(archive, "its manifest is too large")
            manifest = BackupManifest.from_json(_read_member(tar, first), archive=archive)
            expected = {entry.path: entry for entry in manifest.files}
            if STORE_NAME not in expected:
                raise BackupCorruptError(archive, f"its manifest names no {STORE_NAME}")
            for path in expected:
                _check_relative(archive, path)
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                named = expected.get(member.name)
                if named is None or member.name in seen or not member.isfile():
                    raise BackupCorruptError(
                        archive, f"member {member.name!r} is not one its manifest names"
                    )
                seen.add(member.name)
                _extract_member(archive, tar, member, named, into)
            missing = sorted(set(expected) - seen)
            if missing:
                raise BackupCorruptError(archive, f"members missing: {', '.join(missing)}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        # gzip's CRC, a truncated stream, a damaged tar header...
        raise BackupCorruptError(archive, str(exc) or type(exc).__name__) from None
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    if extracted is None:
        return b""
    with extracted:
        return extracted.read()


def _check_relative(archive: Path, path: str) -> None:
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
        or "\\" in path
        or "\0" in path
    ):
        raise BackupCorruptError(archive, f"unsafe path {path!r} in its manifest")


def _extract_member(
    archive: Path,
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: BackupFile,
    into: Path,
) -> None:
    target = into / entry.path
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source: IO[bytes] | None = tar.extractfile(member)
    if source is None:
        raise BackupCorruptError(archive, f"member {member.name!r} has no data")
    digest = hashlib.sha256()
    size = 0
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    with source, os.fdopen(descriptor, "wb") as written:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            try:
                written.write(chunk)
            except OSError as exc:
                raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.flush()
        os.fsync(written.fileno())
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise BackupCorruptError(
            archive, f"{entry.path} does not match its SHA-256 in the manifest"
        )
    os.chmod(target, entry.mode & 0o700)  # private to the daemon, whatever it was


# -- putting it in place --------------------------------------------------------------


async def prepare_restored_store(
    path: Path, *, forget_raft: bool, reset_meta: Mapping[str, str]
) -> None:
    """Open the extracted store (migrating it forward as a start would), drop its Raft
    state if ``forget_raft`` (the node then rejoins: :meth:`Store.forget_raft`), set
    ``reset_meta`` and close it checkpointed.

    Raises:
        StoreVersionError: the backup was made by a newer murmur.
        StoreCorruptError: the store is damaged.
    """
    async with await Store.open(path) as store:
        if forget_raft:
            await store.forget_raft(reason=f"restored {datetime.now(UTC).isoformat()}")
        for key, value in reset_meta.items():
            await store.set_meta(key, value)


def install_backup(extracted: Path, data_dir: Path, manifest: BackupManifest) -> None:
    """Move the extracted entries into ``data_dir`` (blocking), replacing what is there
    under the same names, and the store's WAL and shared-memory files with them.
    The caller holds the data dir's lock, so no daemon uses them meanwhile.

    Raises:
        BackupError: an entry cannot be replaced.
    """
    tops = sorted({entry.path.split("/", 1)[0] for entry in manifest.files})
    try:
        for name in STORE_SIDE_FILES:
            (data_dir / name).unlink(missing_ok=True)
        for name in tops:
            target = data_dir / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            os.replace(extracted / name, target)
            if target.is_dir():
                target.chmod(0o700)
        _fsync_directory(data_dir)
    except OSError as exc:
        raise BackupError(f"cannot restore into {data_dir}: {exc.strerror or exc}") from None
