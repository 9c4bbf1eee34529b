"""`StartLedger`: per run, what this term's leader did to start it.

A run is handed to its node (StartRun), sent again while its node does not have
it, and given up once it stayed scheduled or starting past the start timeout.
Each of these rules depends on what this leader did before:

- how many StartRun calls it made: only a run whose one and only call was refused
  may be taken back (a call that may have arrived proves nothing);
- when it last sent one: a run its node never had is given up lost only once no
  call that could still start it is in flight;
- since when it saw the run unstarted: the start timeout runs from then, so a new
  leader (whose ledger starts empty) gives a run more time, never less;
- which runs it took back or gave up: those are never sent again.

Sends are counted per rank (a run id and its node: a gang's ranks share the run
id, each on a node of its own); the start timeout runs per run.

A new term starts a new ledger: another leader may have done anything meanwhile.
"""

from __future__ import annotations

import math
import time

from murmur.node.control.queue.records import ACTIVE_STATES, Assignment, ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states

_UNSTARTED = (states.SCHEDULED, states.STARTING)

RankKey = tuple[str, str]
"""(run id, node): one rank of a run."""


def rank_key(rank: Assignment) -> RankKey:
    return (rank.run_id, rank.node)


class StartLedger:
    """What this term did to start each run still active.

    Args:
        start_timeout: how long a run may stay scheduled or starting (an image pull
            included) before it is given up.
    """

    def __init__(self, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self._attempts: dict[RankKey, int] = {}
        """StartRun calls made per rank."""
        self._last_sent: dict[RankKey, float] = {}
        """Rank → when its last StartRun was sent (monotonic)."""
        self._unstarted_since: dict[str, float] = {}
        """Run id → when this leader first saw its job scheduled or starting
        (monotonic)."""
        self._given_up: set[RankKey] = set()
        """Ranks being taken back or given up: never sent again."""

    def note_sent(self, rank: RankKey) -> int:
        """A StartRun of ``rank`` is being sent; returns how many were, this one
        included."""
        attempts = self._attempts[rank] = self._attempts.get(rank, 0) + 1
        self._last_sent[rank] = time.monotonic()
        return attempts

    def attempts(self, rank: RankKey) -> int:
        return self._attempts.get(rank, 0)

    def was_sent(self, rank: RankKey) -> bool:
        return rank in self._last_sent

    def sent_within(self, rank: RankKey, seconds: float) -> bool:
        """Whether a StartRun of ``rank`` was sent in the last ``seconds``."""
        return time.monotonic() - self._last_sent.get(rank, -math.inf) <= seconds

    def give_up(self, rank: RankKey) -> bool:
        """Send ``rank`` no more; returns whether it was not given up already."""
        if rank in self._given_up:
            return False
        self._given_up.add(rank)
        return True

    def given_up(self, rank: RankKey) -> bool:
        return rank in self._given_up

    def overdue(self, job: ClusterJob) -> bool:
        """Whether the job's run has been scheduled or starting longer than the start
        timeout, counted from when this ledger first saw it so."""
        if job.assignment is None or job.state not in _UNSTARTED:
            return False
        now = time.monotonic()
        since = self._unstarted_since.setdefault(job.assignment.run_id, now)
        return now - since > self.start_timeout

    def forget_inactive(self, control: ControlState) -> None:
        """Drop what the log's jobs no longer need: runs that ended, and the start
        clocks of runs that started."""
        active = {
            rank_key(rank) for job in control.jobs(states=ACTIVE_STATES) for rank in job.live_runs
        }
        self._attempts = {r: n for r, n in self._attempts.items() if r in active}
        self._given_up &= active
        self._last_sent = {r: t for r, t in self._last_sent.items() if r in active}
        unstarted = {
            job.assignment.run_id
            for job in control.jobs(states=_UNSTARTED)
            if job.assignment is not None
        }
        self._unstarted_since = {r: t for r, t in self._unstarted_since.items() if r in unstarted}
