"""How ``murmur dataset add`` shows a long scan on stderr, leaving stdout to the result."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from murmur._cli.output import human_bytes

if TYPE_CHECKING:
    from murmur.v1 import cluster_pb2

QUIET_SECONDS = 1.0
"""A scan done sooner shows nothing."""
LINE_EVERY_SECONDS = 5.0
"""Off a terminal (a log, a pipe), one line per this many seconds."""


def describe(progress: cluster_pb2.DatasetScanProgress) -> str:
    """``1,234/5,678 files, 1.2GiB/4.0GiB (30%)``; ``listing: 5,678 files (4.0GiB) so far``."""
    if progress.listing:
        found = f"{progress.files_total:,} files ({human_bytes(progress.bytes_total)})"
        return f"listing: {found} so far"
    if progress.bytes_total:
        done = progress.bytes_scanned / progress.bytes_total
    else:  # empty files only
        done = progress.files_scanned / progress.files_total if progress.files_total else 1.0
    return (
        f"{progress.files_scanned:,}/{progress.files_total:,} files, "
        f"{human_bytes(progress.bytes_scanned)}/{human_bytes(progress.bytes_total)} "
        f"({min(done, 1.0):.0%})"
    )


class ScanProgressLine:
    """Shows a scan's progress once it has taken about a second.

    On a terminal, one line rewritten in place, erased by `finish`; elsewhere, a
    plain line every few seconds, which a log keeps.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._label = label
        self._stream = stream or sys.stderr
        self._clock = clock
        self._tty = self._stream.isatty()
        self._quiet_until = clock() + QUIET_SECONDS
        self._next_line = self._quiet_until
        self._shown = False

    def update(self, progress: cluster_pb2.DatasetScanProgress) -> None:
        now = self._clock()
        if now < self._quiet_until:
            return
        text = f"{self._label}: {describe(progress)}"
        if self._tty:
            self._rewrite(text, progress.current_path)
        elif now >= self._next_line:
            self._next_line = now + LINE_EVERY_SECONDS
            self._stream.write(f"{text}\n")
            self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        """Erases the in-place line, so what follows starts on a clean line."""
        if self._tty and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _rewrite(self, text: str, current_path: str) -> None:
        width = _columns(self._stream) - 1  # the last column would wrap on some terminals
        room = width - len(text) - 2
        # A file name is anyone's text: no escape sequence of it reaches the terminal.
        current_path = "".join(c if c.isprintable() else "?" for c in current_path)
        if current_path and room >= 12:
            if len(current_path) > room:
                current_path = "…" + current_path[-(room - 1) :]
            text = f"{text}, {current_path}"
        self._stream.write(f"\r{text[:width]}\x1b[K")
        self._stream.flush()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80
