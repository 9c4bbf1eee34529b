"""One daemon per data dir: an exclusive lock on ``<data dir>/daemon.lock``.

The daemon takes it before it reads its identity or opens its store, and holds it
for its whole life. It is an ``flock``, not a pid file, so the kernel drops it
when the holder dies, kill -9 included: no stale lock is ever left to clean up.
The file holds the holder's pid only so that a refused daemon can name it.

Only the daemon may hold it. Its descriptor is close-on-exec, so the supervisors,
the fork server and the lease guards (all started with ``posix_spawn``) never get
it; a child forked without exec closes it at once (``os.register_at_fork``), so no
process outliving the daemon keeps its data dir locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from murmur.node.errors import StartupError

LOCK_FILE = "daemon.lock"

PID_WAIT_SECONDS = 0.5
"""How long a refused daemon waits for the holder to write its pid (it writes it
just after taking the lock) before it gives up naming it."""


class DataDirLock:
    """The held lock on one data dir; :meth:`release` (or leaving the ``with``
    block) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        os.register_at_fork(after_in_child=self._forget_in_child)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Gives the lock up; idempotent."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a stale pid must not name an innocent process
        os.close(fd)  # the last descriptor of the lock: the kernel drops it

    def _forget_in_child(self) -> None:
        # The child shares the lock through the inherited descriptor; closing it
        # there leaves the parent's hold as it was.
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Takes the data dir's lock for this process and writes our pid into it.

    Args:
        data_dir: an existing, writable data dir.

    Raises:
        StartupError: another process holds it (the message names its pid), or
            the lock cannot be taken at all.
    """
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_pid(fd)
        os.close(fd)
        named = f"pid {holder}" if holder is not None else "pid unknown"
        raise StartupError(
            f"data dir {data_dir} is in use by another murmur daemon ({named}); stop it "
            "first, or pass --data-dir for a second node on this machine"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StartupError(
            f"cannot lock data dir {data_dir} ({path}): {exc.strerror or exc}; "
            "the data dir must be on a local filesystem"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StartupError(f"cannot write {path}: {exc.strerror or exc}") from None
    return DataDirLock(path, fd)


def _holder_pid(fd: int) -> int | None:
    """The pid the holder wrote, waiting briefly for a holder that just took it."""
    deadline = time.monotonic() + PID_WAIT_SECONDS
    while True:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
