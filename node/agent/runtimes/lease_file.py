"""``lease.json`` in a run's directory: until when the run may go on without a leader.

The job manager rewrites it as the node's lease is renewed (once it lags by a
little: see ``LEASE_FILE_SLACK_SECONDS`` in node/agent/executor.py); the process
runtime's supervisor reads it about once a second and stops the run once the lease
has passed, so a run stops in time even when the daemon that should stop it was
killed. The time is the wall clock (``time.time()``): the supervisor is another
process, and the monotonic clocks of two processes agree only on Linux.

It imports only the standard library: the supervisor imports it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

LEASE_FILE = "lease.json"

LEASE_GUARD_LOCK = "lease_guard.lock"
"""In a container run's directory: locked by the run's lease guard while it runs."""

LEASE_GUARD_LOG = "lease_guard.log"
"""In a container run's directory: the lease guard's own output."""

CONTAINER_REMOVED_FILE = "container_removed"
"""In a container run's directory: the runtime removed the run's container, so its
lease guard has nothing left to guard."""


def mark_container_removed(run_dir: Path) -> None:
    """Tells the run's lease guard that the container is gone (it exits at its next round)."""
    (run_dir / CONTAINER_REMOVED_FILE).touch()


def container_removed(run_dir: Path) -> bool:
    return (run_dir / CONTAINER_REMOVED_FILE).exists()


@dataclass(frozen=True)
class RunLeaseFile:
    expires_at: float
    """Unix seconds after which the run must be stopped."""
    lease_seconds: float
    """The length of the lease last granted (named in the reason)."""
    grace_seconds: float
    """Between SIGTERM and SIGKILL when the supervisor stops the run."""


def write_lease(run_dir: Path, lease: RunLeaseFile) -> None:
    """Replaces the run's lease file atomically (a reader sees the old or the new one).
    Not fsynced: after a power loss the run is gone anyway."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LEASE_FILE
    temporary = path.with_name(f".{LEASE_FILE}.{os.getpid()}.tmp")
    temporary.write_text(
        json.dumps(
            {
                "expires_at": lease.expires_at,
                "lease_seconds": lease.lease_seconds,
                "grace_seconds": lease.grace_seconds,
            }
        )
    )
    os.replace(temporary, path)


def read_lease(run_dir: Path) -> RunLeaseFile | None:
    """The run's lease, or None when it has none (a run started without a leader's
    lease) or the file is damaged."""
    try:
        data = json.loads((run_dir / LEASE_FILE).read_bytes())
        return RunLeaseFile(
            expires_at=float(data["expires_at"]),
            lease_seconds=float(data["lease_seconds"]),
            grace_seconds=float(data["grace_seconds"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
