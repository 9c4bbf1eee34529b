"""Test teardown for anything that starts runs: no job or supervisor outlives the test."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from murmur.node.agent.runtimes.procfs import is_running, is_same_process
from murmur.node.agent.runtimes.run_files import CHILD_FILE, SUPERVISOR_FILE, read_json


def kill_everything_under(runs_dir: Path) -> None:
    """Kills every job and supervisor recorded under ``runs_dir``, whatever the test
    did, and reaps the supervisors that are this process's children."""
    if not runs_dir.exists():
        return
    for run_dir in runs_dir.iterdir():
        for name in (CHILD_FILE, SUPERVISOR_FILE):
            recorded = read_json(run_dir / name)
            if recorded is None or not is_running(recorded["pid"], recorded["start_time"]):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if name == CHILD_FILE:
                    os.killpg(recorded["pgid"], signal.SIGKILL)
                else:
                    os.kill(recorded["pid"], signal.SIGKILL)
        supervisor = read_json(run_dir / SUPERVISOR_FILE)
        if supervisor is not None and is_same_process(supervisor["pid"], supervisor["start_time"]):
            with contextlib.suppress(ChildProcessError):  # not ours: init reaps it
                os.waitpid(supervisor["pid"], 0)
