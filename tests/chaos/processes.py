"""Processes of the harness still alive, found in ``/proc``.

A job process carries ``CHAOS_MARKER=<token>`` in its environment (the
submitter puts it in every job's spec) and the results directory in its
command line. Daemons, fork servers and run supervisors are known by the lab
directory: in their command line, environment (``MURMUR_HOME``), working
directory or open files (a supervisor writes its run's log, a fork server
its ``forkserver.log``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tests.chaos.checker import LiveProcess

MARKER_VARIABLE = "CHAOS_MARKER"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _start_time(pid: int) -> int | None:
    data = _read(f"/proc/{pid}/stat")
    closing = data.rfind(b")")
    if closing < 0:
        return None
    fields = data[closing + 1 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # a zombie has exited: nothing runs
    return int(fields[19])


def _touches(pid: int, root: str) -> bool:
    with_links = [f"/proc/{pid}/cwd"]
    with contextlib.suppress(OSError):
        with_links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    for link in with_links:
        try:
            if os.readlink(link).startswith(root):
                return True
        except OSError:
            continue
    return False


def _ancestors() -> set[int]:
    """This process and its ancestors (the harness itself names the lab directory)."""
    found = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        data = _read(f"/proc/{pid}/stat")
        fields = data[data.rfind(b")") + 1 :].split()
        pid = int(fields[1]) if len(fields) > 1 else 0
    return found


def harness_processes(marker: str, lab_root: Path) -> list[LiveProcess]:
    """Every live process that is a chaos job (by ``marker``) or belongs to the lab."""
    found: list[LiveProcess] = []
    root = str(lab_root)
    ours = _ancestors()
    wanted = f"{MARKER_VARIABLE}={marker}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        pid = int(entry)
        environ = _read(f"/proc/{pid}/environ").split(b"\0")
        cmdline = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        if wanted in environ:
            kind = "job"
        elif (
            root in cmdline
            or any(root.encode() in variable for variable in environ)
            or _touches(pid, root)
        ):
            kind = "lab"
        else:
            continue
        start = _start_time(pid)
        if start is None:
            continue
        job_id = ""
        for variable in environ:
            if variable.startswith(b"MURMUR_JOB_ID="):
                job_id = variable.split(b"=", 1)[1].decode(errors="replace")
        found.append(LiveProcess(pid, start, kind, job_id, cmdline.strip()))
    return found
