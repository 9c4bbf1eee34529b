"""Sizing test datasets by how fast this machine scans them."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path


def bytes_scanned_in(seconds: float, scratch: Path) -> int:
    """About what a scan reads and hashes here in ``seconds``, measured on a sparse file
    like the tests' own: SHA-256 runs at 0.3 to 2 GB/s, by machine and by load."""
    probe = scratch / "probe.bin"
    with probe.open("wb") as handle:
        handle.truncate(64 * 1024**3)
    digest = hashlib.sha256()
    read = 0
    started = time.perf_counter()
    with probe.open("rb") as handle:
        while time.perf_counter() - started < 0.25:
            chunk = handle.read(1024**2)
            digest.update(chunk)
            read += len(chunk)
    rate = read / (time.perf_counter() - started)
    probe.unlink()
    return max(int(rate * seconds) // 1024**2, 1) * 1024**2
