"""Datasets on this node's disks: registered by path, under configured data roots only.

A dataset is a directory (or a file) a user registers by name. Its path must
resolve, symlinks followed, to somewhere under one of the node's data roots:
neither ``..`` nor a symlink can point a dataset (and so a read-only mount into
a job) at ``/etc``. Registration scans the tree once for size, file count and a
content manifest: SHA-256 over every file's relative path, size and content
hash, so two nodes holding "imagenet" can tell whether they hold the same bytes.

A large tree takes minutes to scan, so the scan (in a thread) reports how far it
has got a few times a second, and stops when told to: a caller that goes away
before the end leaves nothing added. The record is stored only after the whole
scan, in one write that a cancelled caller cannot interrupt halfway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from murmur.node.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from murmur.node.jobspec.paths import contained_path
from murmur.storage import DatasetExistsError, DatasetRecord, Store

_log = logging.getLogger("murmur.node.datasets")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CHUNK = 1024 * 1024

PROGRESS_INTERVAL_SECONDS = 0.25
"""Least time between two progress reports of one scan (at most four a second)."""


@dataclass(frozen=True)
class Scan:
    size_bytes: int
    file_count: int
    manifest_sha256: str


@dataclass(frozen=True)
class ScanProgress:
    """How far a scan has got: it lists the tree (the totals grow), then hashes it."""

    listing: bool
    files_total: int
    """Regular files listed (symlinks are not counted, as in ``Scan.file_count``)."""
    bytes_total: int
    """Their sizes as listed."""
    files_scanned: int
    bytes_scanned: int
    """Bytes hashed so far, the current file's included."""
    current_path: str
    """The entry at hand, relative to the scanned root."""


class ScanStopped(Exception):
    """The scan was told to stop before its end (its caller went away)."""


def resolve_under_roots(path: str, roots: tuple[Path, ...]) -> Path:
    """The real path of ``path`` if it lies under one of ``roots``.

    Raises:
        InvalidArgumentError: relative, with ``..``, missing, or outside every root.
    """
    if not roots:  # never "anywhere": a node always has a data root
        raise FailedPreconditionError("this node has no data roots: datasets cannot be added")
    return contained_path(
        path,
        roots,
        field="dataset path",
        roots_name="this node's data roots",
        must_exist=True,
    )


class _Meter:
    """A scan's counters; reports them every ``interval`` and honours ``stop``."""

    def __init__(
        self,
        report: Callable[[ScanProgress], None] | None,
        stop: threading.Event | None,
        interval: float,
    ) -> None:
        self.listing = True
        self.files_total = self.bytes_total = self.files_scanned = self.bytes_scanned = 0
        self._report = report
        self._stop = stop
        self._interval = interval
        self._next_report = time.monotonic() + interval

    def tick(self, current_path: str) -> None:
        """Called at every entry and chunk: stops the scan, or reports when due."""
        if self._stop is not None and self._stop.is_set():
            raise ScanStopped
        if self._report is None:
            return
        now = time.monotonic()
        if now < self._next_report:
            return
        self._next_report = now + self._interval
        self._report(
            ScanProgress(
                listing=self.listing,
                files_total=self.files_total,
                bytes_total=self.bytes_total,
                files_scanned=self.files_scanned,
                bytes_scanned=self.bytes_scanned,
                current_path=_printable(current_path),
            )
        )


def _printable(path: str) -> str:
    """A file name as text a client can show: bytes that are not UTF-8 as U+FFFD."""
    return os.fsencode(path).decode("utf-8", errors="replace")


def _raise_unreadable(root: Path) -> Callable[[OSError], None]:
    def unreadable(error: OSError) -> None:
        # os.walk would skip a directory it cannot list: the manifest would then
        # describe less than the tree, silently.
        raise FailedPreconditionError(
            f"cannot read {_printable(str(error.filename))} in dataset {root}: {error.strerror}"
        ) from error

    return unreadable


def scan_tree(
    root: Path,
    *,
    report: Callable[[ScanProgress], None] | None = None,
    stop: threading.Event | None = None,
    interval: float = PROGRESS_INTERVAL_SECONDS,
) -> Scan:
    """Size, file count and content manifest of a tree; blocking, run in a thread.

    Symlinks inside the tree are not followed (they could lead outside it); they
    are recorded in the manifest by their target text. Other special files
    (fifos, sockets, devices) are recorded by name and never opened: reading a
    fifo would block the scan for good.

    Args:
        root: A directory or a file, already resolved under a data root.
        report: Called from the scanning thread with the progress, at most once
            per ``interval``; the first report comes after ``interval``, so a
            small tree gives none.
        stop: When set, the scan raises `ScanStopped` at its next entry or chunk.
        interval: Seconds between two reports.

    Raises:
        ScanStopped: ``stop`` was set.
        FailedPreconditionError: a directory or file of the tree cannot be read.
    """
    meter = _Meter(report, stop, interval)
    manifest = hashlib.sha256()
    # (relative path, full path, lstat mode): the size goes to the meter only.
    entries: list[tuple[str, str, int]] = []

    def line(text: str) -> None:
        # Names go in as their bytes: UTF-8 names as ever, and a name that is not
        # UTF-8 (which used to fail the add) as it is on disk.
        manifest.update(text.encode(errors="surrogateescape"))

    def listed(relative: str, full: str) -> None:
        meter.tick(relative)
        info = os.lstat(full)
        entries.append((relative, full, info.st_mode))
        if stat.S_ISREG(info.st_mode):
            meter.files_total += 1
            meter.bytes_total += info.st_size

    try:
        if root.is_file():
            listed(root.name, str(root))
        else:
            walk = os.walk(root, onerror=_raise_unreadable(root), followlinks=False)
            for directory, dirnames, filenames in walk:
                dirnames.sort()
                relative_dir = Path(directory).relative_to(root)
                for name in sorted(filenames):
                    listed(str(relative_dir / name), os.path.join(directory, name))
        meter.listing = False
        for relative, full, mode in entries:
            meter.tick(relative)
            if stat.S_ISLNK(mode):
                line(f"L {relative} -> {os.readlink(full)}\n")
                continue
            if not stat.S_ISREG(mode):
                line(f"S {relative}\n")
                continue
            content = hashlib.sha256()
            file_size = 0
            with open(full, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    content.update(chunk)
                    file_size += len(chunk)
                    meter.bytes_scanned += len(chunk)
                    meter.tick(relative)
            line(f"F {relative} {file_size} {content.hexdigest()}\n")
            meter.files_scanned += 1
    except OSError as error:
        raise FailedPreconditionError(
            f"cannot read {_printable(str(error.filename or root))} in dataset {root}: "
            f"{error.strerror}"
        ) from error
    return Scan(
        size_bytes=meter.bytes_scanned,
        file_count=meter.files_scanned,
        manifest_sha256=manifest.hexdigest(),
    )


class _LatestProgress:
    """Hands a scan's progress from its thread to the event loop, newest only.

    The thread never waits and nothing piles up: an update the loop has not read
    yet is replaced by the next one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._latest: ScanProgress | None = None
        self._changed = asyncio.Event()

    def publish(self, progress: ScanProgress) -> None:
        """From the scanning thread."""
        try:
            self._loop.call_soon_threadsafe(self._put, progress)
        except RuntimeError:  # the loop is closed: nobody is left to report to
            raise ScanStopped from None

    def wake(self) -> None:
        """From the loop: makes `next` return (with None if nothing new came)."""
        self._changed.set()

    def _put(self, progress: ScanProgress) -> None:
        self._latest = progress
        self._changed.set()

    async def next(self) -> ScanProgress | None:
        await self._changed.wait()
        self._changed.clear()
        progress, self._latest = self._latest, None
        return progress


class DatasetCatalog:
    """This node's datasets, in its store, with an in-memory name → path map for jobs."""

    def __init__(self, store: Store, roots: tuple[Path, ...]) -> None:
        self._store = store
        self._roots = roots
        self._records: dict[str, DatasetRecord] = {}
        """Name → record, in step with the store: gossip reads it on every refresh."""
        self._adding: set[str] = set()
        """Names whose scan is under way: a second add of one is refused at once."""
        self.on_change: Callable[[], None] = lambda: None
        """Called after a dataset is added or removed (the daemon gossips the catalog
        at once)."""

    async def load(self) -> None:
        self._records = {d.name: d for d in await self._store.list_datasets()}

    def paths(self) -> dict[str, Path]:
        """Name → path of the datasets a run may mount now. One whose path no longer
        resolves to itself under a data root (a directory swapped for a symlink since
        it was added) is left out, so a run naming it does not start."""
        return {
            name: record.path
            for name, record in self._records.items()
            if self._still_contained(name, record.path)
        }

    def _still_contained(self, name: str, path: Path) -> bool:
        try:
            real = resolve_under_roots(str(path), self._roots)
        except (InvalidArgumentError, FailedPreconditionError) as exc:
            _log.warning("dataset %s is not mountable: %s", name, exc)
            return False
        if real != path:
            _log.warning("dataset %s is not mountable: %s now resolves to %s", name, path, real)
            return False
        return True

    def records(self) -> list[DatasetRecord]:
        """Every dataset of this node, by name, without a store read."""
        return [self._records[name] for name in sorted(self._records)]

    async def add(self, *, name: str, path: str, added_by: str) -> DatasetRecord:
        """Registers ``path`` as ``name`` once its scan is done; see `add_with_progress`."""
        async with contextlib.aclosing(
            self.add_with_progress(name=name, path=path, added_by=added_by)
        ) as updates:
            async for update in updates:
                if isinstance(update, DatasetRecord):
                    return update
        raise AssertionError("add_with_progress ended without a record")

    async def add_with_progress(
        self, *, name: str, path: str, added_by: str
    ) -> AsyncGenerator[ScanProgress | DatasetRecord, None]:
        """Scans ``path`` and registers it as ``name``: progress, then the stored record.

        A bad name, a path outside the data roots and a name already taken are
        refused before the scan starts. Closing or cancelling the iterator before
        its end stops the scan's thread at its next file or chunk, and nothing is
        added.

        Raises:
            InvalidArgumentError: a bad name, or a path outside the data roots.
            DatasetExistsError: the name is taken on this node.
            AlreadyExistsError: another add of the name is scanning.
            FailedPreconditionError: part of the tree cannot be read.
        """
        if not _NAME_RE.match(name):
            raise InvalidArgumentError(
                f"dataset name {name!r} is invalid: lowercase letters, digits, '.', '_', '-'"
            )
        real = resolve_under_roots(path, self._roots)
        if name in self._records:
            raise DatasetExistsError(name)
        if name in self._adding:
            raise AlreadyExistsError(
                f"dataset {name!r} is being added on this node (its scan is under way); "
                "choose another --name"
            )
        self._adding.add(name)
        try:
            progress = _LatestProgress(asyncio.get_running_loop())
            stop = threading.Event()
            started = time.monotonic()
            scanning = asyncio.ensure_future(
                asyncio.to_thread(scan_tree, real, report=progress.publish, stop=stop)
            )
            scanning.add_done_callback(lambda _: progress.wake())
            try:
                while not scanning.done():
                    update = await progress.next()
                    if update is not None and not scanning.done():
                        yield update
                scan = scanning.result()
            finally:
                if not scanning.done():
                    # The caller went away: the thread cannot be cancelled, so it is
                    # told to stop, and nobody waits for what it would have returned.
                    stop.set()
                    scanning.cancel()
                    _log.info(
                        "dataset %s: scan of %s stopped, nothing added",
                        name,
                        real,
                        extra={"event": "dataset.scan_stopped", "dataset": name},
                    )
            record = DatasetRecord(
                name=name,
                path=real,
                size_bytes=scan.size_bytes,
                file_count=scan.file_count,
                manifest_sha256=scan.manifest_sha256,
                added_at=datetime.now(UTC),
                added_by=added_by,
            )
            await self._store_record(record)
            _log.info(
                "dataset %s added: %d files, %d bytes, scanned in %.1f s",
                name,
                scan.file_count,
                scan.size_bytes,
                time.monotonic() - started,
                extra={"event": "dataset.added", "dataset": name},
            )
            yield record
        finally:
            self._adding.discard(name)

    async def _store_record(self, record: DatasetRecord) -> None:
        """Stores the record, then the in-memory map and gossip see it; all or nothing.

        A caller cancelled during the store write does not cut it short: the row
        would be committed while this node's map (which jobs and gossip read)
        missed it until a restart.
        """

        async def store() -> None:
            await self._store.add_dataset(record)
            self._records[record.name] = record
            self.on_change()

        writing = asyncio.ensure_future(store())
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            await asyncio.wait({writing})
            error = None if writing.cancelled() else writing.exception()
            if error is not None:  # nobody is left to tell but the log
                _log.warning(
                    "dataset %s not added: %s",
                    record.name,
                    error,
                    extra={"event": "dataset.add_failed", "dataset": record.name},
                )
            raise

    async def remove(
        self,
        name: str,
        *,
        requested_by: str,
        is_admin: bool,
        mounted_by: Callable[[str], list[str]],
    ) -> DatasetRecord:
        """Unregisters ``name`` from this node: runs can no longer mount it and gossip
        stops advertising it. Its files stay where they are: the data is the lab's,
        and a dataset is often a directory other tools use too.

        Args:
            requested_by: who asks; they may remove a dataset they added.
            is_admin: they may remove any.
            mounted_by: the jobs whose runs on this node mount a dataset now
                (``RunExecutor.jobs_mounting``): refused while there are any.

        Raises:
            NotFoundError: this node holds no dataset of that name.
            PermissionDeniedError: neither an admin nor the user who added it.
            FailedPreconditionError: a run on this node mounts it.
        """
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"node has no dataset named {name!r}")
        if not is_admin and (not record.added_by or record.added_by != requested_by):
            added = f"was added by {record.added_by}" if record.added_by else "has no owner"
            raise PermissionDeniedError(
                f"dataset {name!r} {added}: only they or an admin may remove it"
            )
        jobs = mounted_by(name)
        if jobs:
            shown = ", ".join(jobs[:5]) + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")
            raise FailedPreconditionError(
                f"dataset {name!r} is mounted by running job(s) {shown}: "
                "cancel them or wait for them to end"
            )

        async def unregister() -> None:
            await self._store.remove_dataset(name)
            self._records.pop(name, None)
            self.on_change()

        # Like an add: a caller cancelled mid-write leaves the store and the map
        # (which runs and gossip read) in step.
        await asyncio.shield(asyncio.ensure_future(unregister()))
        _log.info(
            "dataset %s removed by %s (its files at %s are left in place)",
            name,
            requested_by,
            record.path,
            extra={"event": "dataset.removed", "dataset": name},
        )
        return record

    async def list(self) -> list[DatasetRecord]:
        return await self._store.list_datasets()
