"""What applying a command returns: errors are values, so a voter never stops on one.

The proposer gets the result back from the Raft runner and turns an error into the
daemon's domain error (``ApplyResult.exception``), which ``murmur.node.api.rpc.status_map`` maps
to a gRPC status in its one place.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from murmur.node import errors
from murmur.node.control.queue.audit_chain import ChainedAudit
from murmur.node.control.queue.records import ClusterJob


class ErrorKind(enum.Enum):
    NOT_FOUND = "not_found"
    """The command names a job the state does not hold."""
    ALREADY_EXISTS = "already_exists"
    """The command would make something that exists (an API key's name, per owner)."""
    PERMISSION_DENIED = "permission_denied"
    """The caller may not do this (cancelling someone else's job without being admin)."""
    FAILED_PRECONDITION = "failed_precondition"
    """Not possible in the job's state (cancelling a job that ended)."""
    INVALID = "invalid"
    """The entry is not a command this version can apply (undecodable, unknown kind,
    missing fields, an index already applied)."""
    STALE = "stale"
    """Valid when sent, overtaken since: an assignment that raced a cancel, a report of
    a run that is no longer the job's current one. Nothing changed."""
    INTERNAL = "internal"
    """A bug in the state machine; the state was left as it was before the command."""


_ERROR_TYPES: dict[ErrorKind, type[errors.NodeError]] = {
    ErrorKind.NOT_FOUND: errors.NotFoundError,
    ErrorKind.ALREADY_EXISTS: errors.AlreadyExistsError,
    ErrorKind.PERMISSION_DENIED: errors.PermissionDeniedError,
    ErrorKind.FAILED_PRECONDITION: errors.FailedPreconditionError,
    ErrorKind.INVALID: errors.InvalidArgumentError,
    ErrorKind.STALE: errors.FailedPreconditionError,
    ErrorKind.INTERNAL: errors.NodeError,
}


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of one log entry.

    Attributes:
        ok: the command was applied (possibly as a no-op, e.g. a repeated cancel or an
            idempotent resubmission).
        job: the job the command named, as it is after the entry (also on most errors,
            when it exists); None for NodeLost, SetNodeDrain, ForgetJobs and for
            unknown jobs.
        error: why it was refused; None when ``ok``.
        message: a sentence for the caller; empty when ``ok``.
        changed: every job this entry changed, in submit order (for watchers).
        forgotten: the jobs a ForgetJobs entry removed, as they were (each voter
            archives them in its own store; the apply stays pure).
        failure: what a bug in the state machine raised (``error`` is INTERNAL),
            traceback and all: the apply stays pure, and whoever hears of every
            applied entry logs it (node/control/queue/cluster_jobs.py).
        audited: the audit chain's new entries (a RecordAudit entry), for each
            voter's own store (node/control/queue/audit_trail.py).
    """

    ok: bool
    job: ClusterJob | None = None
    error: ErrorKind | None = None
    message: str = ""
    changed: tuple[ClusterJob, ...] = ()
    forgotten: tuple[ClusterJob, ...] = ()
    failure: Exception | None = field(default=None, compare=False)
    audited: tuple[ChainedAudit, ...] = ()

    def exception(self) -> errors.NodeError | None:
        """The domain error to raise for a refused command; None when ``ok``."""
        if self.error is None:
            return None
        return _ERROR_TYPES[self.error](self.message)


def refused(
    kind: ErrorKind,
    message: str,
    job: ClusterJob | None = None,
    *,
    failure: Exception | None = None,
) -> ApplyResult:
    return ApplyResult(ok=False, job=job, error=kind, message=message, failure=failure)
