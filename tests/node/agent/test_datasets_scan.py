"""The dataset scan in-process: the same manifest as before, progress, stopping, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from pathlib import Path

import pytest

from murmur.node.agent.datasets import DatasetCatalog, ScanProgress, ScanStopped, scan_tree
from murmur.node.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError
from murmur.storage import DatasetExistsError, DatasetRecord, Store


def manifest_as_first_written(root: Path) -> tuple[int, int, str]:
    """The scan as it was before progress reports (commit 94dfc4a), kept to pin the
    manifest: registered datasets must keep their hash."""
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
        data = full.read_bytes()
        manifest.update(f"F {relative} {len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
        size += len(data)
        count += 1
    return size, count, manifest.hexdigest()


def make_tree(root: Path) -> Path:
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "one.txt").write_text("one\n")
    (root / "b" / "deep" / "two.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (root / "b" / "empty").write_bytes(b"")
    (root / "top.txt").write_text("top\n")
    os.symlink("top.txt", root / "link")
    os.symlink(root / "a", root / "dir-link")  # a directory symlink: not followed
    return root


def test_the_manifest_is_the_one_registered_datasets_already_have(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    scan = scan_tree(root)
    assert (scan.size_bytes, scan.file_count, scan.manifest_sha256) == manifest_as_first_written(
        root
    )
    single = scan_tree(root / "top.txt")
    assert (single.size_bytes, single.file_count, single.manifest_sha256) == (
        manifest_as_first_written(root / "top.txt")
    )


def test_progress_lists_then_hashes_with_growing_counts(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    reports: list[ScanProgress] = []
    scan = scan_tree(root, report=reports.append, interval=0)
    listing = [r for r in reports if r.listing]
    hashing = [r for r in reports if not r.listing]
    assert listing
    assert hashing
    assert reports.index(hashing[0]) == len(listing)  # listing comes first
    assert [r.files_total for r in listing] == sorted(r.files_total for r in listing)
    assert {(r.files_total, r.bytes_total) for r in hashing} == {(4, scan.size_bytes)}
    assert [r.bytes_scanned for r in hashing] == sorted(r.bytes_scanned for r in hashing)
    assert [r.files_scanned for r in hashing] == sorted(r.files_scanned for r in hashing)
    # The 3 MiB file is reported chunk by chunk, under its relative path.
    assert sum(r.current_path == "b/deep/two.bin" for r in hashing) >= 3
    assert hashing[-1].files_scanned < scan.file_count  # the last report precedes the end


def test_reports_are_throttled(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    for i in range(200):
        (root / f"{i:03}").write_bytes(b"x")
    reports: list[ScanProgress] = []
    scan_tree(root, report=reports.append, interval=60)
    assert reports == []


def test_a_stopped_scan_raises_at_its_next_entry(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    stop = threading.Event()

    def stop_at_first_report(progress: ScanProgress) -> None:
        stop.set()

    with pytest.raises(ScanStopped):
        scan_tree(root, report=stop_at_first_report, stop=stop, interval=0)


def test_a_fifo_is_recorded_and_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "data").write_text("x")
    os.mkfifo(root / "pipe")
    scan = scan_tree(root)  # opening the fifo would block here for good
    assert scan.file_count == 1
    assert scan.size_bytes == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_an_unreadable_directory_is_refused_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "closed").mkdir(parents=True)
    (root / "closed" / "f").write_text("x")
    (root / "closed").chmod(0)
    try:
        with pytest.raises(FailedPreconditionError, match=r"cannot read .*closed"):
            scan_tree(root)
    finally:
        (root / "closed").chmod(0o755)


async def test_the_catalog_refuses_before_scanning_and_adds_only_whole_scans(
    tmp_path: Path,
) -> None:
    data_root = tmp_path / "datasets"
    tree = make_tree(data_root / "tree")
    async with await Store.open(tmp_path / "murmur.db") as store:
        catalog = DatasetCatalog(store, (data_root,))
        changes: list[str] = []
        catalog.on_change = lambda: changes.append("changed")
        added = await catalog.add(name="tree", path=str(tree), added_by="ada")
        assert added.file_count == 4
        assert changes == ["changed"]

        with pytest.raises(DatasetExistsError):
            await catalog.add(name="tree", path=str(tree), added_by="ada")
        with pytest.raises(InvalidArgumentError, match="outside"):
            await catalog.add(name="etc", path="/etc", added_by="ada")
        with pytest.raises(InvalidArgumentError, match="invalid"):
            await catalog.add(name="Bad Name", path=str(tree), added_by="ada")

        # A whole scan yields its progress (none here: small) and then the record.
        results = [
            u async for u in catalog.add_with_progress(name="t2", path=str(tree), added_by="bo")
        ]
        assert isinstance(results[-1], DatasetRecord)
        assert results[-1].manifest_sha256 == added.manifest_sha256
        assert changes == ["changed", "changed"]

        # Closed after its first report: the scan stops and nothing is stored.
        (data_root / "big").mkdir()
        with (data_root / "big" / "sparse").open("wb") as handle:
            handle.truncate(64 * 1024**3)  # 64 GiB of holes: minutes to hash
        updates = catalog.add_with_progress(name="big", path=str(data_root / "big"), added_by="ada")
        async with contextlib.aclosing(updates):
            first = await asyncio.wait_for(anext(updates), timeout=30)
            # While it scans, its name is taken: a second add is refused at once.
            with pytest.raises(AlreadyExistsError, match="scan is under way"):
                await catalog.add(name="big", path=str(tree), added_by="bo")
        assert isinstance(first, ScanProgress)
        assert first.bytes_total == 64 * 1024**3
        assert sorted(d.name for d in await catalog.list()) == ["t2", "tree"]
        assert sorted(d.name for d in catalog.records()) == ["t2", "tree"]
        assert len(changes) == 2
        # The scanning thread ends at once instead of hashing the other 63.9 GiB:
        # the executor's shutdown waits for it.
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), 10)


def test_names_that_are_not_utf8_are_scanned_and_reported_printable(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    odd = os.fsdecode(b"caf\xe9.txt")  # Latin-1, as an old tarball may hold
    (root / odd).write_text("x")
    reports: list[ScanProgress] = []
    scan = scan_tree(root, report=reports.append, interval=0)
    assert scan.file_count == 1
    expected = hashlib.sha256(
        b"F caf\xe9.txt 1 " + hashlib.sha256(b"x").hexdigest().encode() + b"\n"
    )
    assert scan.manifest_sha256 == expected.hexdigest()
    assert {r.current_path for r in reports} == {"caf\ufffd.txt"}
