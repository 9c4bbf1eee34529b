"""What the control state holds about each job: frozen values, replaced on every change.

A job is ``pending`` (waiting, maybe backed off until ``not_before_us``), then
``scheduled`` / ``starting`` / ``running`` while it has an active run (``runs``,
exactly then), and ends ``succeeded``, ``failed``, ``cancelled`` or ``lost``; a failed
or lost run with retries left puts it back to ``pending``, and so does a run lost with
its node, without spending one. A terminal job never changes again.

A run is one ``Assignment`` per rank: one for a single-node job, ``spec.nodes`` for a
gang (a multi-node job), every rank on its own node, all sharing the run id. A gang's
ranks start together and end together: the first rank that ends other than
succeeded records a ``GangStop`` and the others are stopped; the run ends, as the stop
says, once every rank has ended (each rank gives back what it holds as it ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.node.jobspec import states
from murmur.v1 import types_pb2

ACTIVE_STATES = frozenset({states.SCHEDULED, states.STARTING, states.RUNNING})
"""A job in one of these states has an assignment: a run on a node holds its resources."""

ALL_STATES = (
    states.PENDING,
    states.SCHEDULED,
    states.STARTING,
    states.RUNNING,
    states.SUCCEEDED,
    states.FAILED,
    states.CANCELLED,
    states.LOST,
)

HISTORY_LIMIT = 50
"""Events kept per job (the latest ones), for ``murmur job show``."""

PAST_RUNS_LIMIT = 20
"""Ended runs kept per job (the latest ones)."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """A job's run on one node, fenced by the (term, sequence) of the entry that made it.

    Attributes:
        node: the node that runs it.
        run_id: the run's id, chosen by the leader that placed it.
        attempt: 1 for the first run of a job, 2 for its first retry, ...
        gpu_indices: the node's GPUs the run holds, ascending as the scheduler chose them.
        term: the Raft term of the AssignJob entry; a node refuses assignments from a
            term lower than the highest it has seen.
        sequence: the log index of the AssignJob entry (unique in the cluster).
        assigned_at_us: when the leader placed it.
        started_at_us: when the node reported it running; 0 before.
        rank: a gang's node rank (0 is the gang's master); 0 for a single-node job.
        master_port: a gang's rendezvous port on rank 0's node (torchrun's
            ``MASTER_PORT``); 0 for a single-node job.
        ended: the state a gang's rank ended in while other ranks still run; empty
            while it runs (a single-node run's end ends the job's run at once).
        ended_at_us: when ``ended`` was reported.
    """

    node: str
    run_id: str
    attempt: int
    gpu_indices: tuple[int, ...]
    term: int
    sequence: int
    assigned_at_us: int = 0
    started_at_us: int = 0
    rank: int = 0
    master_port: int = 0
    ended: str = ""
    ended_at_us: int = 0

    @property
    def is_live(self) -> bool:
        """Whether the rank still runs (holds what it was given)."""
        return not self.ended


@dataclass(frozen=True, slots=True)
class GangStop:
    """Why a gang's run is ending: the first rank that ended other than succeeded.
    Once every rank has ended, the run ends as this says.

    Attributes:
        state: the rank's end (failed, lost, cancelled).
        exit_code: the rank's exit code, if it had one.
        reason: the rank's reason, naming the rank and its node.
        retryable: a failure the job's retries may retry (not a time limit).
        with_node: the rank was lost with its node: the job is requeued without
            spending an attempt.
    """

    state: str
    exit_code: int | None
    reason: str
    retryable: bool
    with_node: bool


@dataclass(frozen=True, slots=True)
class EndedRun:
    """A run that ended, as the job's story tells it."""

    ranks: tuple[Assignment, ...]
    """Every rank of the run, in rank order (one for a single-node job)."""
    state: str
    """succeeded, failed, cancelled or lost."""
    exit_code: int | None
    reason: str
    ended_at_us: int

    @property
    def assignment(self) -> Assignment:
        """Rank 0 (the run, for a single-node job)."""
        return self.ranks[0]


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One line of a job's history: when, the job's state after it, and why."""

    at_us: int
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClusterJob:
    """One job of the cluster queue. Do not mutate ``spec``: the state shares it.

    Attributes:
        submit_order: the log index of the SubmitJob entry; lower was submitted first.
        not_before_us: retry backoff: the job is not placed before this time; 0 for none.
        cancel_requested: a cancel was asked for while a run was active; the node
            stops the run and its report ends the job ``cancelled``.
        runs: the active run's ranks in rank order, exactly while the state is in
            ``ACTIVE_STATES`` (one for a single-node job); empty otherwise.
        past_runs: the latest ended runs, oldest first.
        history: the latest events, oldest first.
    """

    id: str
    spec: types_pb2.JobSpec
    user: str
    queue: str
    priority: int
    submit_order: int
    submitted_at_us: int
    updated_at_us: int
    state: str
    reason: str
    attempts: int
    exit_code: int | None
    not_before_us: int
    cancel_requested: bool
    cancel_reason: str
    idempotency_key: str
    runs: tuple[Assignment, ...]
    past_runs: tuple[EndedRun, ...]
    history: tuple[JobEvent, ...]
    preempted_by: str = ""
    """The job whose place its current run gives up (``PreemptJob``): the run is
    being stopped (``cancel_requested``), and its end puts the job back in the queue
    with its attempt unspent. Empty otherwise."""
    gang_stop: GangStop | None = None
    """A gang's run is ending: a rank ended other than succeeded and the others are
    being stopped. None otherwise."""

    @property
    def assignment(self) -> Assignment | None:
        """The active run's rank 0 (the run, for a single-node job); None when no run
        is active."""
        return self.runs[0] if self.runs else None

    @property
    def is_gang(self) -> bool:
        return self.spec.nodes > 1

    @property
    def live_runs(self) -> tuple[Assignment, ...]:
        """The active run's ranks that still run (every rank, but for a gang whose
        run is ending)."""
        return tuple(rank for rank in self.runs if rank.is_live)

    def rank_on(self, node: str) -> Assignment | None:
        """The active run's live rank on ``node``, if any (a gang has at most one
        rank per node)."""
        for rank in self.runs:
            if rank.node == node and rank.is_live:
                return rank
        return None

    @property
    def stopping(self) -> bool:
        """The active run is being stopped: cancelled, preempted, or a gang whose
        run is ending."""
        return self.cancel_requested or self.gang_stop is not None

    @property
    def stop_reason(self) -> str:
        """What a stop of the active run tells its nodes."""
        if self.cancel_requested:
            return self.cancel_reason or "cancelled"
        if self.gang_stop is not None:
            return f"gang stopped: {self.gang_stop.reason}"
        return ""

    @property
    def is_terminal(self) -> bool:
        return self.state in states.TERMINAL

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def shares_gpus(self) -> bool:
        """The job asked for GPUs and may share them with other sharing jobs."""
        return self.spec.gpus.share and self.spec.gpus.count > 0


@dataclass(frozen=True, slots=True)
class DrainRecord:
    """The last SetNodeDrain the log holds for a node (an undrained node keeps its
    record: the log has spoken, and the node's own flag must follow it).

    Attributes:
        draining: placement gives the node nothing new.
        by: who asked, as the audit log names them.
        at_us: when, by the node's own clock (increasing per node).
    """

    node: str
    draining: bool
    by: str
    at_us: int


@dataclass(frozen=True, slots=True)
class LabPolicyRecord:
    """The lab policy the log holds: its text, who applied it when, and its entry
    (the policy's version)."""

    text: str
    by: str
    at_us: int
    index: int
