"""`JobRetention`: on the leader, forget ended jobs past the cluster's retention.

The control state would otherwise keep every job it ever had, and every Raft
snapshot with it. Every ``FORGET_INTERVAL_SECONDS`` (or half the retention, when
that is shorter) the leader proposes a ``ForgetJobs`` naming up to
``MAX_FORGET_JOBS`` jobs that ended longer ago than ``job_retention_seconds``; a
full command means more are due, and the next follows after
``BACKLOG_PAUSE_SECONDS``. Each voter checks every named job against the command's
own time and retention when it applies it (node/control/queue/state.py), and archives
what it forgot (node/control/queue/job_archive.py). Snapshots then stay flat: they hold the jobs
of about one retention period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from murmur.node.control.consensus.errors import NotLeaderError, ProposalTimeoutError
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.commands import MAX_FORGET_JOBS, ForgetJobs, encode
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState

_log = logging.getLogger("murmur.leader")

FORGET_INTERVAL_SECONDS = 30.0
BACKLOG_PAUSE_SECONDS = 1.0
MIN_INTERVAL_SECONDS = 0.5


def _now_us() -> int:
    return time.time_ns() // 1000


def forget_interval(retention_seconds: float) -> float:
    """Seconds between two looks for jobs to forget."""
    return max(MIN_INTERVAL_SECONDS, min(FORGET_INTERVAL_SECONDS, retention_seconds / 2))


class JobRetention:
    """Proposes ForgetJobs while this node leads.

    Args:
        retention_seconds: how long a job is kept after it ended; 0 keeps every job.
    """

    def __init__(
        self,
        *,
        consensus: ConsensusRunner,
        control: ControlState,
        retention_seconds: float,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self._consensus = consensus
        self._control = control
        self._retention_us = int(retention_seconds * 1_000_000)
        self._interval = forget_interval(retention_seconds)
        self._clock_us = clock_us

    async def run(self) -> None:
        if self._retention_us <= 0:
            return  # keep every job
        pause = self._interval
        while True:
            await asyncio.sleep(pause)
            pause = self._interval
            if not (self._consensus.is_leader and self._consensus.state_is_current()):
                continue
            try:
                named = await self.forget_once()
            except (NotLeaderError, ProposalTimeoutError) as exc:
                _log.info("forgetting old jobs stopped: %s", exc)
                continue
            if named >= MAX_FORGET_JOBS:
                pause = BACKLOG_PAUSE_SECONDS

    async def forget_once(self) -> int:
        """One ForgetJobs, if any job is due; returns how many jobs it named.

        Raises:
            NotLeaderError, ProposalTimeoutError: not committed.
        """
        now = self._clock_us()
        due = self._control.forgettable(now, self._retention_us, MAX_FORGET_JOBS)
        if not due:
            return 0
        command = ForgetJobs(job_ids=tuple(due), retention_us=self._retention_us, at_us=now)
        result = await self._consensus.propose(encode(command))
        forgotten = len(result.forgotten) if isinstance(result, ApplyResult) else 0
        _log.info(
            "forgot %d jobs that ended over %g s ago",
            forgotten,
            self._retention_us / 1e6,
            extra={"event": "leader.jobs_forgotten", "count": forgotten},
        )
        return len(due)
