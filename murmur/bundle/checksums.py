"""SHA-256 of files and of whole trees, in the ``sha256sum`` format.

``SHA256SUMS`` lists every file of a bundle as ``<64 hex>  <relative path>`` (two
spaces: sha256sum's text mode), sorted by path, so that ``sha256sum -c SHA256SUMS``
checks a bundle on a machine without Murmur, and so that the same files always give
the same bytes (what the signature covers).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of one file's contents."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` that is not a directory (files, links, anything
    else), as paths relative to ``root``, sorted; links are listed, never followed."""
    found: list[Path] = []
    for folder, directories, names in os.walk(root):
        here = Path(folder)
        # A link to a directory is listed by os.walk as a directory; it is an entry
        # of its own here (and not descended into).
        for name in list(directories):
            if (here / name).is_symlink():
                directories.remove(name)
                names.append(name)
        found.extend((here / name).relative_to(root) for name in names)
    yield from sorted(found, key=lambda path: path.as_posix())


def sums_text(root: Path, paths: list[Path]) -> str:
    """``SHA256SUMS`` of ``paths`` (relative to ``root``), sorted by path."""
    lines = [
        f"{file_sha256(root / path)}  {path.as_posix()}\n"
        for path in sorted(paths, key=lambda path: path.as_posix())
    ]
    return "".join(lines)


def tree_digest(root: Path) -> str:
    """One SHA-256 for a whole tree: its files' paths, contents and executable bits,
    and its links' targets. Two builds are byte-identical when their digests are."""
    digest = hashlib.sha256()
    if root.is_file():
        return file_sha256(root)
    for relative in walk_files(root):
        path = root / relative
        if path.is_symlink():
            entry = f"L {relative.as_posix()} {os.readlink(path)}\n"
        else:
            executable = "x" if os.access(path, os.X_OK) else "-"
            entry = f"F {relative.as_posix()} {executable} {file_sha256(path)}\n"
        digest.update(entry.encode("utf-8"))
    return digest.hexdigest()
