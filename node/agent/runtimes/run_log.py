"""A run's output on disk: JSON lines in size-capped segments, readable while written.

Each line is ``{"t": <unix seconds>, "s": "stdout"|"stderr"|"system", "l": <text>}``.
Segments are named by the byte offset at which they start
(``log-000000000000.jsonl``, ``log-000067108864.jsonl``, ...), so an offset
stays meaningful after old segments are deleted: a reader that resumes at
offset X opens the segment starting at or before X and seeks to the rest.
Only the newest ``keep_segments`` are kept, which caps a run's log on disk.

One writer per run (the process supervisor, or the docker log pump); any number
of readers. Writers append whole lines and flush each, so a reader never sees
half a line except at the very end of the newest segment, which it leaves for
the next read.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Stream = Literal["stdout", "stderr", "system"]

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP_SEGMENTS = 4
MAX_LINE_CHARS = 64 * 1024
"""Longer output lines are split: one runaway line must not become one giant record."""

_SEGMENT_RE = re.compile(r"^log-(\d{12})\.jsonl$")


@dataclass(frozen=True)
class LogEntry:
    time: float
    stream: Stream
    text: str
    offset: int
    """Byte offset of the line after this one: resume reading from here."""


def _segments(directory: Path) -> list[tuple[int, Path]]:
    """(start offset, path) of every segment, oldest first."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        match = _SEGMENT_RE.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _segment_name(start: int) -> str:
    return f"log-{start:012d}.jsonl"


class RunLogWriter:
    """Appends output lines to a run's log directory, rotating by size."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        keep_segments: int = DEFAULT_KEEP_SEGMENTS,
    ) -> None:
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._keep = keep_segments
        directory.mkdir(parents=True, exist_ok=True)
        segments = _segments(directory)
        if segments:
            start, path = segments[-1]
            self._start = start
            self._handle: IO[bytes] = path.open("ab")
            self._size = self._handle.tell()
            if self._size and not _ends_with_newline(path):
                # The last writer died half way through a line: end it, or the
                # next record would be glued to it and both would be unreadable.
                self._handle.write(b"\n")
                self._handle.flush()
                self._size += 1
        else:
            self._start = 0
            self._handle = (directory / _segment_name(0)).open("ab")
            self._size = 0

    @property
    def offset(self) -> int:
        return self._start + self._size

    def write(self, stream: Stream, text: str, *, at: float | None = None) -> None:
        moment = time.time() if at is None else at
        for start in range(0, max(len(text), 1), MAX_LINE_CHARS):
            chunk = text[start : start + MAX_LINE_CHARS]
            record = json.dumps(
                {"t": round(moment, 6), "s": stream, "l": chunk}, ensure_ascii=False
            )
            data = record.encode("utf-8") + b"\n"
            if self._size and self._size + len(data) > self._segment_bytes:
                self._rotate()
            self._handle.write(data)
            self._handle.flush()
            self._size += len(data)

    def _rotate(self) -> None:
        self._handle.close()
        self._start += self._size
        self._size = 0
        self._handle = (self._directory / _segment_name(self._start)).open("ab")
        for _, old in _segments(self._directory)[: -self._keep]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        self._handle.close()


def read_entries(directory: Path, *, from_offset: int = 0) -> Iterator[LogEntry]:
    """Every complete line at or after ``from_offset``, in order.

    An offset older than the oldest kept segment starts at that segment (the
    output in between was rotated away).
    """
    for index, (start, path) in enumerate(segments := _segments(directory)):
        end = segments[index + 1][0] if index + 1 < len(segments) else None
        if end is not None and end <= from_offset:
            continue
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # rotated away under us
            continue
        with handle:
            position = max(0, from_offset - start)
            handle.seek(position)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a line still being written
                position += len(raw)
                try:
                    record = json.loads(raw)
                    yield LogEntry(
                        time=float(record["t"]),
                        stream=record["s"],
                        text=str(record["l"]),
                        offset=start + position,
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # a damaged line (disk full at the wrong moment) is skipped


def end_offset(directory: Path) -> int:
    """The offset just past the last byte written so far."""
    segments = _segments(directory)
    if not segments:
        return 0
    start, path = segments[-1]
    try:
        return start + path.stat().st_size
    except FileNotFoundError:
        return start
