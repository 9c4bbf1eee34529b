"""Typed records the store reads and writes: one frozen dataclass per table row.

Timestamps are aware UTC datetimes; the store keeps them as integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TERMINAL_RUN_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "lost"})
"""Run states after which nothing more happens; every other state counts as active."""


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset held on this node's disks."""

    name: str
    path: Path
    """Where the dataset lives on this node."""
    size_bytes: int
    file_count: int
    manifest_sha256: str
    """SHA-256 of the dataset's file manifest, to tell copies on other nodes apart."""
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class RunRecord:
    """One attempt of a job on this node, as the node last recorded it."""

    id: str
    job_id: str
    attempt: int
    node: str
    state: str
    gpu_indices: tuple[int, ...]
    """Indices of the node's GPUs the run holds."""
    container_id: str
    """Docker container id; empty for the process runtime or before the container exists."""
    pid: int | None
    pid_start_time: int | None
    """The process's start time as the OS reports it (Linux: /proc/PID/stat field 22, clock
    ticks since boot); with ``pid`` it tells our process from a later one reusing the pid."""
    exit_code: int | None
    reason: str
    term: int
    """Leader term of the assignment that created the run (fencing token, with sequence)."""
    sequence: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    runtime: str = ""
    """Which runtime runs it: "process" or "docker"."""

    @property
    def is_active(self) -> bool:
        """Whether the run may still hold GPUs or a process: its state is not terminal."""
        return self.state not in TERMINAL_RUN_STATES


TERMINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "lost"})
"""Job states after which the job is history; a lost job that is re-queued goes back to
"pending" instead."""


@dataclass(frozen=True)
class JobRecord:
    """A job the leader placed on this node (its local mirror), as the node last recorded it."""

    id: str
    submit_order: int
    """Queue order among jobs of equal priority; assigned by the store, 0 before insert."""
    spec: bytes
    """The serialized ``murmur.v1.JobSpec``, kept opaque by the store."""
    user: str
    queue: str
    state: str
    reason: str
    submitted_at: datetime
    updated_at: datetime
    attempts: int
    exit_code: int | None
    not_before: datetime | None
    """Retry backoff: the job is not placed before this time."""
    cancel_reason: str
    """Non-empty once a cancel was asked for."""
    idempotency_key: str

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


@dataclass(frozen=True)
class ArchivedJobRecord:
    """A job the replicated queue forgot, as this voter archived it."""

    id: str
    submit_order: int
    """The job's SubmitJob log index: its place in listings."""
    user: str
    queue: str
    state: str
    """How it ended: succeeded, failed, cancelled or lost."""
    ended_at: datetime
    archived_at: datetime
    """When this node archived it."""
    data: bytes
    """The serialized ``murmur.v1.ControlJob``, kept opaque by the store."""


@dataclass(frozen=True)
class EventRecord:
    """One event in the node's event log; ids grow with every append."""

    id: int
    time: datetime
    kind: str
    subject: str
    """What the event is about, e.g. a job or run id."""
    message: str
    job_state: str
    """The job's state after the event, or empty when the event is not a job transition."""


@dataclass(frozen=True)
class AuditEntry:
    """An audit log entry before it is stored (it gets its id from the store)."""

    time: datetime
    user: str
    role: str
    action: str
    target: str
    result: str
    detail: str


@dataclass(frozen=True)
class AuditRecord:
    """A stored audit log entry: who did what, when, to what, with what result."""

    id: int
    time: datetime
    user: str
    role: str
    action: str
    target: str
    result: str
    detail: str


@dataclass(frozen=True)
class JoinTokenRecord:
    """A one-time join token; only the SHA-256 of its secret is kept."""

    token_id: str
    secret_sha256: str
    created_at: datetime
    expires_at: datetime
    created_by: str
    used_at: datetime | None
    used_by: str | None


@dataclass(frozen=True)
class RaftEntryRecord:
    """One entry of the Raft log, as stored: the store does not interpret it."""

    index: int
    term: int
    kind: str
    data: bytes
    voters: tuple[str, ...]


@dataclass(frozen=True)
class RaftSnapshotRecord:
    """The replicated state up to ``last_index``, and the voters in force there."""

    last_term: int
    last_index: int
    voters: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class RaftDurableState:
    """Everything Raft saved: term, vote, snapshot and the entries after it."""

    term: int
    voted_for: str | None
    snapshot: RaftSnapshotRecord | None
    entries: tuple[RaftEntryRecord, ...]
    rejoining: bool = False
    """The store was restored from a backup with its Raft state dropped
    (:meth:`Store.forget_raft`), and the node has not caught up with a leader since:
    it must neither vote nor stand until it has."""


@dataclass(frozen=True)
class RevocationRecord:
    """A certificate revocation this node enforces: one RevokeCertificate entry of
    the control log. Exactly one of ``name`` and ``serial`` is set."""

    index: int
    """The entry's log index."""
    name: str
    serial: str
    revoked_at_us: int
    """Microseconds since the epoch (the revoking admin's node's clock)."""
    revoked_by: str
    reason: str


@dataclass(frozen=True)
class ChainedAuditRecord:
    """An entry of the cluster's audit trail as a voter stores it (``audit_chain``):
    an audited call, its place in the chain and its chain hash."""

    seq: int
    origin: str
    """``"<node>/<incarnation>"``: whose outbox the call came from."""
    origin_id: int
    node: str
    time_us: int
    """Microseconds since the epoch, the clock of the node that took the call."""
    user: str
    role: str
    action: str
    target: str
    result: str
    detail: str
    hash: bytes
