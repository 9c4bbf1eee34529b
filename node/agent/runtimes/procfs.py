"""Process identity from ``/proc``: a pid saved before a restart is never mistaken
for a new process that happens to reuse it.

A pid alone is not an identity: after the daemon restarts, the number it stored
may belong to someone else's process. The pair (pid, start time in clock ticks
since boot, field 22 of ``/proc/PID/stat``) is unique for the life of the
machine, so every signal the process runtime sends goes through these checks.

Standard library only: the per-run supervisor imports this module.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the runtime uses."""

    state: str
    """One letter: ``R``, ``S``, ``D``, ``Z`` (zombie: exited, not yet reaped), ..."""
    pgid: int
    start_time: int
    """Clock ticks after boot at which the process started."""


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat fields, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 2 (comm) is "(name)" and the name may itself hold spaces and ")":
    # the fields after it start past the last ")".
    closing = data.rfind(b")")
    if closing < 0:
        return None
    fields = data[closing + 1 :].split()
    # fields[0] is field 3 (state), so field N is fields[N - 3].
    try:
        return ProcStat(
            state=fields[0].decode("ascii", errors="replace"),
            pgid=int(fields[5 - 3]),
            start_time=int(fields[22 - 3]),
        )
    except (IndexError, ValueError):
        return None


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat``, or None when there is no such process."""
    stat = read_stat(pid)
    return None if stat is None else stat.start_time


def is_same_process(pid: int, start_time: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start_time``
    (a zombie still is: it has exited but its pid is not free yet)."""
    if start_time is None:
        return False
    return process_start_time(pid) == start_time


def is_running(pid: int, start_time: int | None) -> bool:
    """Whether that very process exists and has not exited (zombies have)."""
    if start_time is None:
        return False
    stat = read_stat(pid)
    return stat is not None and stat.start_time == start_time and stat.state not in ("Z", "X")


def signal_group(pgid: int, leader_start_time: int | None, signum: signal.Signals) -> bool:
    """Sends ``signum`` to process group ``pgid`` if it is still the group that
    the leader started at ``leader_start_time`` led. Returns whether it was sent.

    The group's number is its leader's pid. Linux does not hand out a pid
    while a process group of that number has members, so: if the leader is
    the recorded process, the group is ours; if no process has that pid, any
    members left are the leader's (ours); if another process has that pid, the
    old group had emptied before the number was reused, and nothing is sent.
    """
    stat = read_stat(pgid)
    if stat is not None and stat.start_time != leader_start_time:
        return False
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_process(pid: int, start_time: int | None, signum: signal.Signals) -> bool:
    """Sends ``signum`` to ``pid`` if it is still the process that started at
    ``start_time``. Returns whether it was sent."""
    if not is_running(pid, start_time):
        return False
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
