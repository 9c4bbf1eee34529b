"""The stop notice: how a run learns, when it is asked to stop, how long it has.

A stop (a preemption, a cancel, its time limit, its gang's end) sends the run SIGTERM
and, ``stop_grace_seconds`` later, SIGKILL. A job that checkpoints wants to know,
when SIGTERM comes (or at each step, if it does not handle signals), that the stop is
on and when the kill comes. So every run's environment names a file,
``MURMUR_PREEMPT_DEADLINE``, that does not exist while the run may go on and is
written just before the SIGTERM of a stop: its first line is the deadline (Unix
seconds, after which the run is killed), its second the reason (``preempted by job
X: ...``). The grace itself is in ``MURMUR_STOP_GRACE_SECONDS`` from the start.

The files live in ``<notices root>/<run id>/stop``: the root is ``0711`` (no one but
the daemon lists it), a run's directory ``0755`` and its file ``0644``, so the run's
own account, whoever it is, reads it by its path. A docker run sees its directory,
read-only, at ``CONTAINER_NOTICE_DIR``. Blocking: call from a thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

NOTICE_FILE = "stop"
CONTAINER_NOTICE_DIR = "/run/murmur"
"""Where a container sees its run's notice directory."""


class StopNotices:
    """The notice directories of this node's runs, under ``root``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def dir_of(self, run_id: str) -> Path:
        return self._root / run_id

    def prepare(self, run_id: str) -> Path:
        """Creates the run's notice directory (empty: no stop asked) and returns it."""
        self._root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self._root.chmod(0o711)  # mkdir's mode passes through the umask
        directory = self.dir_of(run_id)
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)
        return directory

    def post(self, run_id: str, deadline: float, reason: str) -> None:
        """Writes the notice of a stop (whole or not at all: a reader never sees half);
        the first stop's stands."""
        directory = self.dir_of(run_id)
        target = directory / NOTICE_FILE
        if not directory.is_dir() or target.exists():
            return
        partial = directory / f".{NOTICE_FILE}.tmp"
        one_line = " ".join(reason.split())
        partial.write_text(f"{deadline:.3f}\n{one_line}\n")
        partial.chmod(0o644)
        os.replace(partial, target)

    def remove(self, run_id: str) -> None:
        """Forgets the run's notice (its end is recorded)."""
        shutil.rmtree(self.dir_of(run_id), ignore_errors=True)
