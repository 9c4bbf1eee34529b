"""A container's output, copied into the run's log by a log pump.

A log pump is two threads (stdout, stderr) reading the engine's timestamped log
stream and writing into the run's one
:class:`~murmur.node.agent.runtimes.run_log.RunLogWriter`. The engine keeps the output
while the daemon is down; a pump started again resumes just after the last line on
disk (:func:`resume_points`), so nothing is lost and nothing written twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murmur.node.agent.runtimes.docker_engine import (
    RECONNECT_SECONDS,
    engine_errors,
    engine_reason,
    not_found_error,
    parse_engine_time,
)
from murmur.node.agent.runtimes.run_log import RunLogWriter, Stream, end_offset, read_entries

if TYPE_CHECKING:
    from docker import DockerClient

_log = logging.getLogger("murmur.node.runtimes")

RESUME_WINDOW_BYTES = 8 * 1024 * 1024
"""How much of the end of a run's log is read to find where to resume."""

TIME_SLACK = 2e-6
"""Log times are kept to the microsecond, the engine's to the nanosecond: resuming
asks the engine for a little more than needed, and skips what is already written."""


@dataclass
class ResumePoint:
    """Where one stream's output stands in the run's log, to go on from there without
    writing a line twice.

    The engine is asked for the lines since just before ``last`` (the time of the
    newest line in the log); while catching up, lines older than ``last``, and
    lines at ``last`` that are already in the log (counted, so a line printed twice
    in one microsecond is written twice), are skipped. The first line not in the
    log ends the catching up: from then on every line is written, even if the
    clock steps back.
    """

    last: float = 0.0
    already: Counter[str] = field(default_factory=Counter)
    catching_up: bool = True

    @property
    def since(self) -> float:
        """The ``since`` to ask the engine for (0: from the start)."""
        return max(0.0, self.last - TIME_SLACK) if self.last else 0.0

    def is_written(self, moment: float, text: str) -> bool:
        """Whether this line is already in the log (consumes the match)."""
        if not self.catching_up:
            return False
        if moment < self.last:
            return True
        if moment == self.last and self.already[text] > 0:
            self.already[text] -= 1
            return True
        self.catching_up = False
        return False

    def note(self, moment: float, text: str) -> None:
        """Remembers a line just written."""
        if moment != self.last:
            self.already = Counter()
            self.last = moment
        self.already[text] += 1

    def reconnect(self) -> None:
        """A new stream from the engine starts at ``since``: catch up again."""
        self.catching_up = True


def resume_points(log_dir: Path) -> dict[Stream, ResumePoint]:
    """Where stdout and stderr stand in a run's log, from the end of the log.

    Only the last :data:`RESUME_WINDOW_BYTES` are read. A stream with no line
    there resumes from the window's first line (its last line is older).
    """
    start = max(0, end_offset(log_dir) - RESUME_WINDOW_BYTES)
    points: dict[Stream, ResumePoint] = {}
    first: float | None = None
    for entry in read_entries(log_dir, from_offset=start):
        moment = entry.time
        if first is None:
            first = moment
        if entry.stream in ("stdout", "stderr"):
            points.setdefault(entry.stream, ResumePoint()).note(moment, entry.text)
    for stream in ("stdout", "stderr"):
        if stream not in points:
            points[stream] = ResumePoint(last=first if start > 0 and first is not None else 0.0)
    return points


class LogPump:
    """Follows a container's stdout and stderr into the run's log.

    Two threads, one writer: writes are serialised by a lock. A stream that ends
    while the container still runs (the engine restarted, a connection dropped) is
    opened again from where it stands. ``follow=False`` copies what the engine has
    and stops (a container that already ended).
    """

    def __init__(
        self,
        *,
        client: Callable[[], DockerClient],
        run_id: str,
        container_id: str,
        log_dir: Path,
        resume: dict[Stream, ResumePoint],
        follow: bool = True,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._container_id = container_id
        self._follow = follow
        self._writer = RunLogWriter(log_dir)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._open_streams: set[Any] = set()
        self._threads = [
            threading.Thread(
                target=self._pump,
                args=(stream, resume[stream]),
                name=f"murmur-log-{stream}-{run_id}",
                daemon=True,
            )
            for stream in ("stdout", "stderr")
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        """Waits for both streams to end; whether they did within ``timeout``."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        """Stops following and closes the writer (idempotent)."""
        self._closed.set()
        with self._lock:
            streams = list(self._open_streams)
        for stream in streams:
            with contextlib.suppress(Exception):  # closing a socket the engine already closed
                stream.close()
        self.join(1.0)
        with self._lock:
            self._writer.close()

    def _write(self, stream: Stream, moment: float, text: str, point: ResumePoint) -> None:
        moment = round(moment, 6)
        if point.is_written(moment, text):
            return
        with self._lock:
            if self._closed.is_set():
                return
            self._writer.write(stream, text, at=moment)
        point.note(moment, text)

    def _pump(self, stream: Stream, point: ResumePoint) -> None:
        follow = self._follow
        while not self._closed.is_set():
            try:
                self._copy(stream, point, follow=follow)
            except not_found_error():
                return
            except engine_errors() as exc:
                _log.warning(
                    "lost the output stream of a container; trying again",
                    extra={"run_id": self._run_id, "stream": stream, "error": engine_reason(exc)},
                )
            if not follow or self._closed.is_set():
                return
            if not self._still_running():
                # A followed stream may end before the engine hands over the last
                # output (often a line without a newline): one more plain read.
                follow = False
                continue
            self._closed.wait(RECONNECT_SECONDS)

    def _copy(self, stream: Stream, point: ResumePoint, *, follow: bool) -> None:
        point.reconnect()
        logs = self._client().api.logs(
            self._container_id,
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            stream=True,
            follow=follow,
            timestamps=True,
            since=point.since if point.since > 0 else None,
        )
        with self._lock:
            self._open_streams.add(logs)
        partial: tuple[float, str] | None = None
        try:
            for frame in logs:
                stamp, _, raw = bytes(frame).partition(b" ")
                moment = parse_engine_time(stamp.decode("ascii", "replace")) or time.time()
                text = raw.decode("utf-8", errors="replace")
                if partial is not None:  # the engine cuts lines over 16 KiB into parts
                    moment, text = partial[0], partial[1] + text
                    partial = None
                if not text.endswith("\n"):
                    partial = (moment, text)
                    continue
                for line in text[:-1].split("\n"):
                    self._write(stream, moment, line, point)
        finally:
            if partial is not None:  # the last output had no newline
                self._write(stream, partial[0], partial[1], point)
            with self._lock:
                self._open_streams.discard(logs)
            logs.close()

    def _still_running(self) -> bool:
        try:
            state = self._client().api.inspect_container(self._container_id)["State"]
        except not_found_error():
            return False
        except engine_errors():
            return True  # the engine is away; the container may well run on
        return bool(state.get("Running"))
