"""Datasets on this node's disks: registered by path, under configured data roots only.

A dataset is a directory (or a file) a user registers by name. Its path must
resolve, symlinks followed, to somewhere under one of the node's data roots:
neither ``..`` nor a symlink can point a dataset (and so a read-only mount into
a job) at ``/etc``. Registration scans the tree once for size, file count and a
content manifest: SHA-256 over every file's relative path, size and content
hash, so two nodes holding "imagenet" can tell whether they hold the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from node.errors import InvalidArgumentError, NotFoundError
from storage import DatasetRecord, RecordNotFoundError, Store

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Scan:
    size_bytes: int
    file_count: int
    manifest_sha256: str


def resolve_under_roots(path: str, roots: tuple[Path, ...]) -> Path:
    """The real path of ``path`` if it lies under one of ``roots``.

    Raises:
        InvalidArgumentError: relative, missing, or outside every root.
    """
    if not path or not os.path.isabs(path):
        raise InvalidArgumentError(f"dataset path must be absolute, got {path!r}")
    real = Path(os.path.realpath(path))
    if not real.exists():
        raise InvalidArgumentError(f"dataset path {path} does not exist on this node")
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real_root in real.parents:
            return real
    allowed = ", ".join(str(root) for root in roots)
    raise InvalidArgumentError(
        f"dataset path {path} resolves to {real}, outside this node's data roots ({allowed})"
    )


def scan_tree(root: Path) -> Scan:
    """Size, file count and content manifest of a tree; blocking, run in a thread.

    Symlinks inside the tree are not followed (they could lead outside it); they
    are recorded in the manifest by their target text.
    """
    manifest = hashlib.sha256()
    size = count = 0
    entries: list[tuple[str, Path]] = []
    if root.is_file():
        entries.append((root.name, root))
    else:
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(directory) / name
                entries.append((str(full.relative_to(root)), full))
    for relative, full in entries:
        if full.is_symlink():
            manifest.update(f"L {relative} -> {os.readlink(full)}\n".encode())
            continue
        content = hashlib.sha256()
        file_size = 0
        with full.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                content.update(chunk)
                file_size += len(chunk)
        manifest.update(f"F {relative} {file_size} {content.hexdigest()}\n".encode())
        size += file_size
        count += 1
    return Scan(size_bytes=size, file_count=count, manifest_sha256=manifest.hexdigest())


class DatasetCatalog:
    """This node's datasets, in its store, with an in-memory name → path map for jobs."""

    def __init__(self, store: Store, roots: tuple[Path, ...]) -> None:
        self._store = store
        self._roots = roots
        self._records: dict[str, DatasetRecord] = {}
        """Name → record, in step with the store: gossip reads it on every refresh."""
        self.on_change: Callable[[], None] = lambda: None
        """Called after a dataset is added (the daemon gossips the catalog at once)."""

    async def load(self) -> None:
        self._records = {d.name: d for d in await self._store.list_datasets()}

    def paths(self) -> dict[str, Path]:
        return {name: record.path for name, record in self._records.items()}

    def records(self) -> list[DatasetRecord]:
        """Every dataset of this node, by name, without a store read."""
        return [self._records[name] for name in sorted(self._records)]

    async def add(self, *, name: str, path: str, added_by: str) -> DatasetRecord:
        if not _NAME_RE.match(name):
            raise InvalidArgumentError(
                f"dataset name {name!r} is invalid: lowercase letters, digits, '.', '_', '-'"
            )
        real = resolve_under_roots(path, self._roots)
        scan = await asyncio.to_thread(scan_tree, real)
        record = DatasetRecord(
            name=name,
            path=real,
            size_bytes=scan.size_bytes,
            file_count=scan.file_count,
            manifest_sha256=scan.manifest_sha256,
            added_at=datetime.now(UTC),
            added_by=added_by,
        )
        await self._store.add_dataset(record)
        self._records[name] = record
        self.on_change()
        return record

    async def get(self, name: str) -> DatasetRecord:
        try:
            return await self._store.get_dataset(name)
        except RecordNotFoundError:
            raise NotFoundError(f"no dataset named {name!r}") from None

    async def list(self) -> list[DatasetRecord]:
        return await self._store.list_datasets()
