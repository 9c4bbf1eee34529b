"""A container run's lease, seen from the docker runtime: starting the run's lease guard
(:mod:`murmur.node.agent.runtimes.lease_guard`), telling whether one runs, and reading
why it stopped the container.

A run that holds a lease from the leader (``lease.json`` in its directory, see
:mod:`murmur.node.agent.runtimes.lease_file`) gets a lease guard next to its container:
a process in a session of its own that outlives the daemon and stops the container
once the lease has passed, as the process runtime's supervisor does for a process.
The guard writes why it stopped it (``lease_stop.json``, :class:`LeaseStop`) before
it does; the runtime's ``wait`` and ``recover`` then report the run lost, with that
reason.

It does not import the Docker SDK: the lease guard imports it at start.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from murmur.node.agent.runtimes.detached import spawn_module
from murmur.node.agent.runtimes.docker_engine import parse_engine_time
from murmur.node.agent.runtimes.lease_file import LEASE_GUARD_LOCK, LEASE_GUARD_LOG
from murmur.node.agent.runtimes.run_files import read_json, write_json_atomic

LEASE_STOP_FILE = "lease_stop.json"
"""In the run's directory: written by the lease guard just before it stops the container."""


@dataclass(frozen=True)
class LeaseStop:
    """``lease_stop.json``: the lease guard stopped (or is stopping) a container."""

    container_id: str
    """The full id of the container it stopped: a record about another is ignored."""
    reason: str
    """Starts with ``lost:`` and names the lease."""
    at: float
    """Unix seconds, just before the guard asked the engine to stop the container."""


def write_lease_stop(run_dir: Path, stop: LeaseStop) -> None:
    write_json_atomic(
        run_dir / LEASE_STOP_FILE,
        {"container_id": stop.container_id, "reason": stop.reason, "at": stop.at},
    )


def read_lease_stop(run_dir: Path) -> LeaseStop | None:
    """The lease guard's record, or None when there is none or it is damaged."""
    data = read_json(run_dir / LEASE_STOP_FILE)
    if data is None:
        return None
    try:
        return LeaseStop(
            container_id=str(data["container_id"]), reason=str(data["reason"]), at=float(data["at"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def lease_stop_reason(run_dir: Path, container_id: str, finished_at: str | None) -> str | None:
    """Why the lease guard stopped this container, if it did.

    Args:
        run_dir: the run's directory.
        container_id: the container's full id.
        finished_at: the engine's ``State.FinishedAt``, None when the container is gone.
            A container that ended before the guard decided to stop it ended by
            itself (the guard's stop then found it stopped).
    """
    stop = read_lease_stop(run_dir)
    if stop is None or stop.container_id != container_id:
        return None
    if finished_at is not None:
        finished = parse_engine_time(finished_at)
        if finished is not None and finished < stop.at:
            return None
    return stop.reason


def lease_guard_running(run_dir: Path) -> bool:
    """Whether a lease guard holds the run's guard lock (probes it without waiting)."""
    try:
        fd = os.open(run_dir / LEASE_GUARD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if the probe took it
    return False


def spawn_lease_guard(
    *, python: str, run_dir: Path, run_id: str, container_id: str, host: str
) -> int:
    """Starts the lease guard of a container in a session of its own (``setsid``), so
    that neither a kill of the daemon nor of its process group reaches it.
    ``posix_spawn``, not fork: the daemon runs gRPC, which must not be forked.

    Returns:
        The guard's pid; the caller reaps it.

    Raises:
        OSError: it could not be started.
    """
    return spawn_module(
        python,
        ["-P"],
        "murmur.node.agent.runtimes.lease_guard",
        [str(run_dir.resolve()), run_id, container_id, host],
        log_path=run_dir / LEASE_GUARD_LOG,
    )
