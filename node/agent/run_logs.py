"""Reading a run's log for clients: the whole log, its tail, or live until the run ends."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from murmur.node.agent.runtimes.run_log import LogEntry, read_entries

POLL_SECONDS = 0.2


def _read(directory: Path, offset: int) -> list[LogEntry]:
    return list(read_entries(directory, from_offset=offset))


def _tail(directory: Path, offset: int, lines: int) -> list[LogEntry]:
    return list(deque(read_entries(directory, from_offset=offset), maxlen=lines))


async def run_log_entries(
    directory: Path,
    *,
    from_offset: int = 0,
    tail_lines: int = 0,
    follow: bool = False,
    run_ended: Callable[[], bool],
) -> AsyncIterator[LogEntry]:
    """Yields log entries from ``from_offset`` (or only the last ``tail_lines``).

    With ``follow``, keeps yielding new lines as they are written and ends once
    ``run_ended()`` is true and everything written before that has been read.
    Files are read in a worker thread; the event loop never waits on the disk.
    """
    offset = from_offset
    if tail_lines:
        entries = await asyncio.to_thread(_tail, directory, offset, tail_lines)
    else:
        entries = await asyncio.to_thread(_read, directory, offset)
    while True:
        for entry in entries:
            offset = entry.offset
            yield entry
        if not follow:
            return
        ended = run_ended()  # checked before reading, so lines written before the end are read
        entries = await asyncio.to_thread(_read, directory, offset)
        if ended and not entries:
            return
        if not entries:
            await asyncio.sleep(POLL_SECONDS)
