"""The replicated control state: the cluster's job queue, rebuilt on every voter by
applying the control log's commands in order.

Pure and deterministic: no I/O, no clock, no randomness, no iteration over anything
whose order could differ between voters (or between a voter that replayed its log
and one that restored a snapshot). Every time comes from a command; the
assignment's fencing token is the entry's own (term, index). A command that cannot
be decoded or is not allowed changes nothing and returns an error value: every
voter of every version refuses it alike. One exception: an entry above this
version's control protocol level (a command it does not know, or one whose meaning
grew since: node/control/queue/protocol.py) raises ``UpgradeRequiredError`` having
changed nothing, and the runner stops applying the log there (fail-stop) rather
than skip what the other voters apply.

Rules, one command at a time:

- ``SubmitJob``: a new pending job, or, for a (user, idempotency key) seen before,
  the job made the first time. An array (``spec.array``) makes all its tasks, jobs
  ``ID[INDEX]`` sharing its spec (node/control/queue/arrays.py). Its dependencies
  (``spec.after``) must name jobs or arrays the state holds, never itself; a job
  whose dependency can never be met ends cancelled at once, one still waiting is
  held from placement (node/control/queue/dependencies.py). The lab policy's
  default time limit, default project and the project's MLflow settings become the
  spec's own (node/control/queue/projects.py).
- ``SubmitJobs``: several submissions, each as above, all made or none (the first
  refusal names its job, 1-based); one may wait for a job made earlier in it. Sent
  again (every idempotency key seen, each job's id the one it made), the jobs made
  the first time; a key a job outside the batch used is refused.
- Every entry that ends a job (or the last task of an array, or a task an
  ``ok`` dependency waited on) settles the jobs waiting on it: one whose
  dependencies are all met is placeable, one whose dependency can no longer be met
  ends cancelled, "dependency never satisfied: ...", which may settle others.
- ``CancelJob``: owner or admin; a pending job ends ``cancelled`` at once; an active
  one is marked ``cancel_requested`` and ends ``cancelled`` when its node reports
  the run's end; a terminal job refuses (failed precondition). An array's id
  cancels every task not ended (refused when all have).
- ``AssignJob``: only for a job still pending, due, at the next attempt, whose GPUs
  are free on the node as this state knows it (no exclusive holder; sharers only
  join sharers): otherwise stale, nothing changes (the plan raced another entry).
  Its GPUs must number what the spec asks, and its run id must not be another
  active run's. CPUs and memory are not checked here (the state does not know what
  nodes offer): the leader must not plan again before its assignments are applied.
- ``ReportRun``: only for the job's current run on its node (else stale); starting
  and running move the job forward; an end finishes the run, and a failed or lost
  run with retries left (and not stopped at its time limit) puts the job back to
  pending after a backoff (``retry_backoff_us``).
- ``NodeLost``: every active run on the node ends lost (its node died, was removed,
  or was cut off, and the runs' lease surely lapsed). Lost with its node, not for
  the job's sake, a run puts its job back to pending at once, its attempt unspent
  (``attempts`` one less, the run kept in ``past_runs``), "requeued: lost with
  node N (attempt not spent)"; so does a run its own node reports lost for the
  node's sake (``states.lost_with_its_node``: its lease lapsed, or the node restarted
  without it). A spec with ``no_requeue`` opts out: such a loss is then retried as
  above, retries permitting. A cancel pending ends the job cancelled.
- ``RevokeAssignment``: only for a scheduled job's current run (its node never
  spoke of it): the job is pending again with its attempt unspent, or, with a
  cancel pending, ends cancelled.
- ``SetNodeDrain``: records whether the node is drained; while it is, an
  ``AssignJob`` to it is stale (an acknowledged drain holds even against a plan
  made before it). Asking for what the log already says changes nothing.
- ``RecordAudit``: appends each audited call to the audit chain (its hash over the
  previous one's, ``audit_chain.py``), skipping a call whose origin id is not above
  the last one applied from its origin (a retried shipment); the result carries the
  new entries, for each voter's store. It changes no job.
- ``RevokeCertificate``: adds a revocation (by name or by serial, exactly one;
  the name a valid one, the serial lowercase hex) to the deny list, whose revision
  is the entry's index (node/deny_list.py). Revocations are never taken back. It
  changes no job.
- ``CreateJoinToken`` / ``ConsumeJoinToken``: a join token is recorded, then used
  once at most, cluster-wide (node/control/queue/join_tokens.py). They change no job.
- ``AddTrustedCa`` / ``RetireCa``: a CA rotation's two steps
  (node/control/queue/ca_rotations.py). They change no job.
- ``PreemptJob``: only for an active job not being cancelled or preempted: its
  run is to be stopped (``cancel_requested``, delivered like a cancel), and when
  it ends the job is pending again at once with its attempt unspent, whatever the
  run's end. A cancel meanwhile wins: the job then ends cancelled.
- ``SetLabPolicy``: the lab's scheduling policy, when its text parses
  (scheduler/lab_policy.py); its version is the entry's index. It changes no job:
  the leader places by it from then on.
- ``ForgetJobs``: removes each named job that ended ``retention_us`` or more
  before the command's ``at_us`` (by its ``updated_at_us``: a job that ended never
  changes again), from every index; any other is skipped. The result carries the
  forgotten jobs, for each voter's archive. An idempotency key of a forgotten job
  is forgotten with it.
- ``CreateApiKey`` / ``RevokeApiKey`` / ``RecordApiKeyUsage``: the model router's
  API keys (hashes only) and their usage (node/control/queue/api_keys.py). They
  change no job.
- ``SetClusterLevel``: the cluster's control protocol level (``cluster_level``)
  goes up to the command's; one at or below it changes nothing. It changes no job.

Every query is answered from indexes kept in step with the jobs, so applying a
command costs the same with 100 jobs as with 100,000.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Collection, Iterable

from murmur.certs import InvalidNameError, validate_name
from murmur.node.control.consensus.errors import UpgradeRequiredError
from murmur.node.control.queue import codec
from murmur.node.control.queue.api_keys import ApiKeyTable
from murmur.node.control.queue.arrays import ArrayRecord, ArrayTable, new_array
from murmur.node.control.queue.audit_chain import GENESIS_HASH, AuditCall, extend
from murmur.node.control.queue.ca_rotations import CaRotationTable
from murmur.node.control.queue.codec import ControlSnapshotError, SnapshotTooNewError
from murmur.node.control.queue.commands import (
    MAX_AUDIT_CALLS,
    MAX_BATCH_JOBS,
    MAX_FORGET_JOBS,
    REPORTABLE_STATES,
    AddTrustedCa,
    AssignJob,
    CancelJob,
    Command,
    CommandDecodeError,
    ConsumeJoinToken,
    CreateApiKey,
    CreateJoinToken,
    CreateService,
    DeleteService,
    ForgetJobs,
    NodeLost,
    PreemptJob,
    RecordApiKeyUsage,
    RecordAudit,
    RecordUserCertificate,
    ReportRun,
    RetireCa,
    RevokeApiKey,
    RevokeAssignment,
    RevokeCertificate,
    RollReplica,
    ScaleService,
    SetClusterLevel,
    SetLabPolicy,
    SetNodeDrain,
    SubmitJob,
    SubmitJobs,
    UpdateService,
    from_message,
    parse,
)
from murmur.node.control.queue.dependencies import (
    NEVER_SATISFIED,
    DependencyStatus,
    DependentsIndex,
    Verdict,
    overall,
    status_of,
)
from murmur.node.control.queue.join_tokens import JoinTokenTable
from murmur.node.control.queue.projects import with_project_defaults
from murmur.node.control.queue.protocol import (
    BASE_LEVEL,
    PROTOCOL_LEVEL,
    feature,
    required_level,
)
from murmur.node.control.queue.records import (
    ALL_STATES,
    HISTORY_LIMIT,
    PAST_RUNS_LIMIT,
    Assignment,
    ClusterJob,
    DrainRecord,
    EndedRun,
    GangStop,
    JobEvent,
    LabPolicyRecord,
)
from murmur.node.control.queue.results import ApplyResult, ErrorKind, refused
from murmur.node.control.queue.services import (
    HEALTHY_RUN_US,
    ServiceRecord,
    outdated,
    replica_job_id,
    replica_revision,
    replica_spec,
    restarts,
)
from murmur.node.control.queue.user_certificates import UserCertificateTable
from murmur.node.deny_list import Revocation
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import iter_task_ids, split_task_id, task_count, task_index
from murmur.node.jobspec.secrets import without_secret_values
from murmur.node.jobspec.validation import DEFAULT_QUEUE
from murmur.scheduler.fair_share import DAY_US, UsageBucket
from murmur.scheduler.lab_policy import NO_LAB_POLICY, LabPolicy, PolicyError, parse_policy
from murmur.v1 import control_pb2, types_pb2

SNAPSHOT_FORMAT = 1
SNAPSHOT_FORMAT_WITH_DRAINS = 2
"""A snapshot that holds drains says format 2, so a version that knows none refuses
it rather than lose them; one without is format 1, byte for byte as before."""
SNAPSHOT_FORMAT_WITH_AUDIT = 3
"""A snapshot that holds the audit chain's head says format 3 (drains or not): a
version that knows no audit chain refuses it rather than restart the chain."""
SNAPSHOT_FORMAT_WITH_REVOCATIONS = 4
"""A snapshot that holds certificate revocations says format 4 (whatever else it
holds): a version that knows none refuses it rather than forget a revocation."""
SNAPSHOT_FORMAT_WITH_JOIN_TOKENS = 30
"""A snapshot that holds join tokens says format 30 (whatever else it holds; a high
number, clear of the formats other state takes in order): a version that knows none
refuses it rather than let a used token be used again."""
SNAPSHOT_FORMAT_WITH_CA_CHANGES = 31
"""A snapshot that holds CA rotation steps says format 31 (whatever else it holds): a
version that knows none refuses it rather than trust a retired CA again."""
SNAPSHOT_FORMAT_WITH_LAB_POLICY = 32
"""A snapshot that holds a lab policy says format 32 (whatever else it holds): a
version that knows none refuses it rather than schedule without the lab's quotas."""
SNAPSHOT_FORMAT_WITH_USAGE = 33
"""A snapshot that holds usage records says format 33 (whatever else it holds): a
version that knows none refuses it rather than forget who has had what."""
SNAPSHOT_FORMAT_WITH_SERVICES = 35
"""A snapshot that holds services says format 35 (whatever else it holds): a version
that knows none refuses it rather than let their replicas end for good."""
SNAPSHOT_FORMAT_WITH_SERVICE_REVISIONS = 37
"""A snapshot that holds a service updated at least once says format 37 (whatever
else it holds): a version that knows no revisions refuses it rather than take the
old revision's replicas for current ones and never finish the update."""
SNAPSHOT_FORMAT_WITH_API_KEYS = 36
"""A snapshot that holds API keys (or their usage's origins) says format 36 (whatever
else it holds): a version that knows none refuses it rather than let a revoked key
work again, or lose what the keys were used for."""
SNAPSHOT_FORMAT_WITH_ARRAYS = 38
"""A snapshot that holds arrays, dependencies or projects (a job that names one, or
usage by project) says format 38 (whatever else it holds): a version that knows
none refuses it rather than run a task without its index, a job before the one it
waits for, or forget what a project used."""
SNAPSHOT_FORMAT_WITH_CLUSTER_LEVEL = 40
"""A snapshot of a cluster whose protocol level was raised above 1 says format 40
(whatever else it holds): a version from before levels refuses it rather than apply
later entries it may not know (node/control/queue/protocol.py)."""
SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES = 41
"""A snapshot that holds records of issued user certificates says format 41
(whatever else it holds): a version that knows none refuses it rather than forget
who the lab CA has issued certificates to."""
SNAPSHOT_FORMAT_WITH_GANGS = 34
"""A snapshot that holds a run of several ranks (a gang's) says format 34 (whatever
else it holds): a version that knows one rank per run refuses it rather than lose
the others (and leave their GPUs held by nobody)."""
USAGE_KEPT_DAYS = 400
"""Usage older than this (from the newest day recorded) is forgotten."""

ENDED_ORDER_SLACK_US = 300_000_000
"""``forgettable`` reads ended jobs in the order they ended and stops at the first
that ended this much after the cutoff: end times come from several nodes' clocks,
so the order is only nearly theirs."""

DEFAULT_RETRY_BACKOFF_BASE_US = 5_000_000
RETRY_BACKOFF_MAX_US = 300_000_000
"""A retry waits at most 5 min, however often the job failed."""


def retry_backoff_us(attempt: int, base_us: int) -> int:
    """base, 2 base, 4 base ... capped at 5 min: a crashing job does not spin the cluster."""
    exponent = max(0, attempt - 1)
    if exponent >= 40:  # far past the cap; spares a huge integer
        return RETRY_BACKOFF_MAX_US
    backoff: int = base_us * 2**exponent
    return min(RETRY_BACKOFF_MAX_US, backoff)


def gpu_list(indices: Iterable[int]) -> str:
    """``"0,1"``, or ``"none"``: how reasons name a run's GPUs."""
    return ",".join(str(index) for index in indices) or "none"


def _seconds(us: int) -> str:
    return f"{us // 1_000_000}s" if us % 1_000_000 == 0 else f"{us / 1_000_000}s"


class ControlState:
    """The cluster's job queue as the committed log so far made it.

    Args:
        retry_backoff_base_us: the first retry's backoff. A cluster-wide setting: every
            voter must use the same value, or their states drift apart.
        protocol_level: the control protocol level this node speaks (this version's,
            unless a test simulates an older one: ``simulate_protocol_level``): an entry
            or snapshot above it raises ``UpgradeRequiredError``.
    """

    def __init__(
        self,
        *,
        retry_backoff_base_us: int = DEFAULT_RETRY_BACKOFF_BASE_US,
        protocol_level: int = PROTOCOL_LEVEL,
    ) -> None:
        self._retry_backoff_base_us = retry_backoff_base_us
        self._protocol_level = protocol_level
        self._other_changes = 0
        self._reset()

    def _reset(self) -> None:
        self._applied_index = 0
        self._jobs: dict[str, ClusterJob] = {}
        """Every job, in submit order (log order; a snapshot restores them in that order)."""
        self._by_state: dict[str, dict[str, None]] = {state: {} for state in ALL_STATES}
        self._active_by_node: dict[str, dict[str, None]] = {}
        self._gpu_holders: dict[str, dict[int, dict[str, bool]]] = {}
        """node → GPU index → {job id: shares}, for every active assignment."""
        self._active_runs: dict[str, str] = {}
        """run id → job id, for every active assignment."""
        self._by_idempotency: dict[tuple[str, str], str] = {}
        self._ended: dict[str, None] = {}
        """Every ended job, in the order it ended (after a restore: by end time). Read
        only by ``forgettable``, a leader's query: the order may differ between a
        voter that replayed the log and one that restored a snapshot."""
        self._drains: dict[str, DrainRecord] = {}
        self._drained: frozenset[str] = frozenset()
        self._other_changes += 1  # a restore replaces everything
        self._reset_audit()
        self._reset_revocations()
        self.join_tokens = JoinTokenTable()
        self.api_keys = ApiKeyTable()
        """The model router's API keys (node/control/queue/api_keys.py)."""
        """Join tokens, single use cluster-wide (node/control/queue/join_tokens.py)."""
        self.ca_rotations = CaRotationTable()
        """CA rotation steps (node/control/queue/ca_rotations.py)."""
        self.lab_policy_record: LabPolicyRecord | None = None
        """The lab policy applied last, as the log holds it; None: none applied."""
        self.lab_policy: LabPolicy = NO_LAB_POLICY
        """That policy, parsed: what the leader places by."""
        self._usage: dict[tuple[str, str, int], float] = {}
        """(user, group, day) -> GPU-seconds of runs that ended that day."""
        self._usage_newest_day = 0
        self._submitted_since_change: list[str] = []
        self._services: dict[str, ServiceRecord] = {}
        """Services by name (node/control/queue/services.py)."""
        self.arrays = ArrayTable()
        """Arrays by id, with their tasks counted by state (node/control/queue/arrays.py)."""
        self._dependents = DependentsIndex()
        """Jobs waiting on others (node/control/queue/dependencies.py)."""
        self._project_usage: dict[tuple[str, int], float] = {}
        """(project, day) -> GPU-seconds of runs that ended that day."""
        self.user_certificates = UserCertificateTable()
        """User certificates the lab CA issued (node/control/queue/user_certificates.py)."""
        self.cluster_level = BASE_LEVEL
        """The control protocol level every node speaks, as the log says
        (``SetClusterLevel``): commands that need more are refused before they are
        proposed (node/control/queue/protocol_gate.py)."""

    @property
    def other_changes(self) -> int:
        """Counts applied entries that may have changed more than adding a pending job
        (every entry but a new submission; a restore too). Equal counts, read at two
        moments, mean the state changed between them only by new submissions:
        ``submitted_since_change``."""
        return self._other_changes

    @property
    def submissions_since_change(self) -> int:
        """How many jobs were submitted since the last change ``other_changes`` counts."""
        return len(self._submitted_since_change)

    def submitted_since_change(self, skip: int = 0) -> list[ClusterJob]:
        """The jobs submitted since the last change ``other_changes`` counts, but the
        first ``skip``, in submit order (each still pending and due: anything else
        would have been such a change)."""
        return [self._jobs[job_id] for job_id in self._submitted_since_change[skip:]]

    @property
    def applied_index(self) -> int:
        """The log index of the last command entry applied; 0 before any."""
        return self._applied_index

    @property
    def retry_backoff_base_us(self) -> int:
        return self._retry_backoff_base_us

    @property
    def protocol_level(self) -> int:
        """The control protocol level this state applies entries up to."""
        return self._protocol_level

    # ------------------------------------------------------------------ apply

    def apply(self, term: int, index: int, data: bytes) -> ApplyResult:
        """Applies one committed command entry.

        An entry that cannot be decoded, or a command that is not allowed, changes
        nothing (but still counts as applied) and returns an error. So does a bug met
        on the way, whose exception the result carries (``ApplyResult.failure``) for
        the log.

        Args:
            term: the entry's term (the assignment's fencing term).
            index: the entry's log index (a submission's order, an assignment's sequence).
            data: the entry's bytes (``commands.encode``).

        Raises:
            UpgradeRequiredError: the entry is above this state's protocol level (see
                the module doc); nothing changed, the entry does not count as applied.
        """
        if index <= self._applied_index:
            return refused(
                ErrorKind.INVALID,
                f"entry {index} is not after the last one applied ({self._applied_index})",
            )
        try:
            message = parse(data)
        except CommandDecodeError as exc:
            self._applied_index = index
            return refused(ErrorKind.INVALID, f"entry {index}: {exc}")
        needed = required_level(message)
        if needed > self._protocol_level:
            raise UpgradeRequiredError(
                f"it needs control protocol {needed} ({feature(needed)}); this node speaks "
                f"protocol {self._protocol_level}"
            )
        self._applied_index = index
        try:
            command = from_message(message)
        except CommandDecodeError as exc:
            return refused(ErrorKind.INVALID, f"entry {index}: {exc}")
        try:
            result = self._apply(term, index, command)
            settled = self._settle_dependents(result.changed) if result.changed else []
        except Exception as exc:  # a bug must not stop the voter; checks precede changes
            self._note_other_change()
            return refused(
                ErrorKind.INTERNAL, f"entry {index} could not be applied: {exc!r}", failure=exc
            )
        if settled:
            result = dataclasses.replace(result, changed=(*result.changed, *settled))
            self._note_other_change()
        elif (
            isinstance(command, SubmitJob | SubmitJobs)
            and result.changed
            and all(_plainly_pending(job) for job in result.changed)
        ):
            # New pending jobs, placeable as any (placement may decide them on top
            # of its last plan); the others hold back or ended at once.
            self._submitted_since_change.extend(job.id for job in result.changed)
        elif isinstance(command, RecordAudit):
            pass  # the audit chain changes no job: placement need not look again
        elif isinstance(command, CreateJoinToken | ConsumeJoinToken):
            pass  # nor do join tokens
        elif isinstance(command, CreateApiKey | RevokeApiKey | RecordApiKeyUsage):
            pass  # nor do API keys
        elif isinstance(command, RecordUserCertificate):
            pass  # nor does a record of a user certificate
        else:
            self._note_other_change()
        return result

    def _note_other_change(self) -> None:
        self._other_changes += 1
        self._submitted_since_change.clear()

    def _apply(self, term: int, index: int, command: Command) -> ApplyResult:
        match command:
            case SubmitJob():
                return self._submit(index, command)
            case SubmitJobs():
                return self._submit_batch(index, command)
            case CancelJob():
                return self._cancel(command)
            case AssignJob():
                return self._assign(term, index, command)
            case ReportRun():
                return self._report(command)
            case NodeLost():
                return self._node_lost(command)
            case RevokeAssignment():
                return self._revoke(command)
            case SetNodeDrain():
                return self._set_drain(command)
            case ForgetJobs():
                return self._forget(command)
            case RecordAudit():
                return self._record_audit(command)
            case RevokeCertificate():
                return self._revoke_certificate(index, command)
            case CreateJoinToken():
                return self.join_tokens.create(command)
            case ConsumeJoinToken():
                return self.join_tokens.consume(command)
            case AddTrustedCa():
                return self.ca_rotations.add(index, command)
            case RetireCa():
                return self.ca_rotations.retire(index, command)
            case SetLabPolicy():
                return self._set_lab_policy(index, command)
            case PreemptJob():
                return self._preempt(command)
            case CreateService():
                return self._create_service(index, command)
            case ScaleService():
                return self._scale_service(index, command)
            case DeleteService():
                return self._delete_service(command)
            case UpdateService():
                return self._update_service(index, command)
            case RollReplica():
                return self._roll_replica(index, command)
            case CreateApiKey():
                return self.api_keys.create(index, command)
            case RevokeApiKey():
                return self.api_keys.revoke(index, command)
            case RecordApiKeyUsage():
                return self.api_keys.record_usage(command)
            case SetClusterLevel():
                return self._set_cluster_level(command)
            case RecordUserCertificate():
                return self.user_certificates.record(index, command)

    def _set_cluster_level(self, command: SetClusterLevel) -> ApplyResult:
        # Only up: a leader's proposal made on a stale view, or sent twice, is harmless.
        self.cluster_level = max(self.cluster_level, command.level)
        return ApplyResult(ok=True)

    def _submit(self, index: int, command: SubmitJob) -> ApplyResult:
        seen = self._submitted_before(command)
        if seen is not None:
            return ApplyResult(ok=True, job=seen)
        problem = self._submission_problem(command, frozenset())
        if problem is not None:
            return problem
        made = self._make_submission(index, command)
        return ApplyResult(ok=True, job=made[0], changed=tuple(made))

    def _submit_batch(self, index: int, command: SubmitJobs) -> ApplyResult:
        """Every submission of the batch, or none: each is checked before any is made."""
        if not command.jobs or len(command.jobs) > MAX_BATCH_JOBS:
            return refused(ErrorKind.INVALID, f"a batch has 1 to {MAX_BATCH_JOBS} jobs")
        seen = [self._submitted_before(job) for job in command.jobs]
        if all(job is not None for job in seen) and all(
            _made_id(job) == submission.job_id
            for job, submission in zip(seen, command.jobs, strict=True)
            if job is not None
        ):
            return ApplyResult(ok=True, job=seen[0])  # the same batch again
        keys: dict[tuple[str, str], int] = {}
        earlier: set[str] = set()
        for number, (submission, before) in enumerate(zip(command.jobs, seen, strict=True), 1):
            if before is not None:
                return refused(
                    ErrorKind.FAILED_PRECONDITION,
                    f"job {number}: its idempotency key was used by job {_made_id(before)}, "
                    "which is not of this batch",
                )
            key = (submission.user, submission.idempotency_key)
            if submission.idempotency_key and key in keys:
                return refused(
                    ErrorKind.INVALID,
                    f"job {number}: the same idempotency key as job {keys[key]}",
                )
            keys[key] = number
            problem = self._submission_problem(submission, frozenset(earlier))
            if problem is not None:
                return dataclasses.replace(problem, message=f"job {number}: {problem.message}")
            earlier.add(submission.job_id)
            if submission.spec.HasField("array"):
                earlier.update(iter_task_ids(submission.job_id, submission.spec.array))
        made: list[ClusterJob] = []
        for submission in command.jobs:
            made.extend(self._make_submission(index, submission))
        return ApplyResult(ok=True, job=made[0], changed=tuple(made))

    def _submitted_before(self, command: SubmitJob) -> ClusterJob | None:
        """The job a submission with the same (user, idempotency key) made (an array's
        first task the queue still holds); None if none did."""
        if not command.idempotency_key:
            return None
        first = self._by_idempotency.get((command.user, command.idempotency_key))
        if first is not None:
            return self._jobs[first]
        record = self.arrays.by_key(command.user, command.idempotency_key)
        if record is None:
            return None
        return next((self._jobs[t] for t in record.task_ids if t in self._jobs), None)

    def _submission_problem(
        self, command: SubmitJob, earlier: Collection[str]
    ) -> ApplyResult | None:
        """Why the state refuses ``command`` (``earlier``: the ids a batch made before
        it, tasks included); None when it takes it."""
        if not command.job_id or not command.user:
            return refused(ErrorKind.INVALID, "a submission needs a job id and a user")
        job_id, spec = command.job_id, command.spec
        if job_id in self._jobs or self.arrays.get(job_id) is not None or job_id in earlier:
            return refused(ErrorKind.INVALID, f"job id {job_id} is taken")
        # The scheduler refuses a snapshot holding such a job: it would block every plan.
        if not math.isfinite(spec.cpus) or spec.cpus < 0:
            return refused(ErrorKind.INVALID, f"cpus is {spec.cpus}, must be >= 0")
        if spec.HasField("array"):
            if split_task_id(job_id) is not None:
                return refused(ErrorKind.INVALID, f"an array's id is not a task's: {job_id}")
            try:
                tasks = task_count(spec.array)
            except ValueError as exc:
                return refused(ErrorKind.INVALID, f"array indices: {exc}")
            if not tasks:
                return refused(ErrorKind.INVALID, "an array needs at least one task")
        for dependency in spec.after:
            target = dependency.job_id
            split = split_task_id(target)
            if target == job_id or (split is not None and split[0] == job_id):
                return refused(ErrorKind.INVALID, f"job {job_id} cannot wait for itself")
            if (
                target not in self._jobs
                and self.arrays.get(target) is None
                and target not in earlier
            ):
                return refused(
                    ErrorKind.NOT_FOUND,
                    f"no job {target} to wait for (a job waits only for jobs submitted "
                    "before it that the queue still holds)",
                )
        return None

    def _make_submission(self, index: int, command: SubmitJob) -> list[ClusterJob]:
        """The jobs a checked submission makes (an array's tasks, in index order):
        pending, or ended at once when a dependency can never be met."""
        spec = command.spec
        default_limit = self.lab_policy.time_limit_of(spec.queue or DEFAULT_QUEUE)
        if default_limit and not spec.time_limit.ToMicroseconds():
            # The lab policy's default time limit becomes the job's own: its node
            # enforces it, and backfill counts on it.
            spec = _with_time_limit(spec, default_limit)
        spec = with_project_defaults(spec, self.lab_policy)
        at, why = command.submitted_at_us, f"submitted by {command.user}"
        if spec.HasField("array"):
            record = new_array(
                command.job_id, spec, command.user, index, at, command.idempotency_key
            )
            self.arrays.add(record)
            made = [
                self._new_job(task, spec, command.user, index, at, why=why)
                for task in record.task_ids
            ]
        else:
            job = self._new_job(
                command.job_id, spec, command.user, index, at,
                idempotency_key=command.idempotency_key, why=why,
            )  # fmt: skip
            made = [job]
        if not spec.after:
            return made
        status = self._dependency_status(spec)
        if status.verdict is Verdict.NEVER:
            reason = f"{NEVER_SATISFIED}: {status.why}"
            return [self._never_satisfied(job, reason, at) for job in made]
        if status.verdict is Verdict.WAITING:
            for job in made:
                self._dependents.register(job)
        return made

    def _never_satisfied(self, job: ClusterJob, reason: str, at: int) -> ClusterJob:
        """``job`` (pending) ended: what it waited for can no longer happen."""
        return self._change(
            job, at, state=states.CANCELLED, reason=reason, cancel_reason=reason, not_before_us=0
        )

    def _dependency_status(self, spec: types_pb2.JobSpec) -> DependencyStatus:
        return overall(spec.after, self._jobs.get, self.arrays.get)

    def _waits_no_more_on(self, spec: types_pb2.JobSpec, target: str) -> bool:
        """Whether the dependency of ``spec`` on ``target`` is settled (met) while
        others still wait."""
        return all(
            status_of(dependency, self._jobs.get, self.arrays.get).verdict is not Verdict.WAITING
            for dependency in spec.after
            if dependency.job_id == target
        )

    def _settle_dependents(self, changed: Iterable[ClusterJob]) -> list[ClusterJob]:
        """The jobs waiting on those of ``changed`` that ended, settled: a job whose
        dependencies are all met now gets an event saying so (it is placeable), one
        whose dependency can never be met ends cancelled (which settles those that
        wait on it in turn). Returns the jobs so changed."""
        settled: list[ClusterJob] = []
        work = [job for job in changed if job.is_terminal]
        while work:
            ended = work.pop(0)
            targets = [ended.id]
            record = self.arrays.of(ended)
            if record is not None and (record.finished or ended.state != states.SUCCEEDED):
                targets.append(record.id)
            for target in targets:
                for waiting_id in self._dependents.waiting_on(target):
                    waiting = self._jobs.get(waiting_id)
                    if waiting is None or waiting.state != states.PENDING:
                        self._dependents.discard(target, waiting_id)
                        continue
                    status = self._dependency_status(waiting.spec)
                    if status.verdict is Verdict.WAITING:
                        if self._waits_no_more_on(waiting.spec, target):
                            self._dependents.discard(target, waiting_id)
                        continue
                    self._dependents.discard(target, waiting_id)
                    at = ended.updated_at_us
                    if status.verdict is Verdict.NEVER:
                        done = self._never_satisfied(
                            waiting, f"{NEVER_SATISFIED}: {status.why}", at
                        )
                        work.append(done)
                    else:
                        done = self._change(
                            waiting, at, reason="queued", event=f"dependencies met: {status.why}"
                        )
                    settled.append(done)
        return settled

    def _new_job(
        self,
        job_id: str,
        spec: types_pb2.JobSpec,
        user: str,
        index: int,
        at: int,
        *,
        idempotency_key: str = "",
        why: str,
    ) -> ClusterJob:
        """A new pending job, stored (its submission's log index orders it)."""
        spec = with_project_defaults(spec, self.lab_policy)
        job = ClusterJob(
            id=job_id,
            spec=spec,
            user=user,
            queue=spec.queue or DEFAULT_QUEUE,
            priority=spec.priority,
            submit_order=index,
            submitted_at_us=at,
            updated_at_us=at,
            state=states.PENDING,
            reason="queued",
            attempts=0,
            exit_code=None,
            not_before_us=0,
            cancel_requested=False,
            cancel_reason="",
            idempotency_key=idempotency_key,
            runs=(),
            past_runs=(),
            history=(JobEvent(at, states.PENDING, why),),
        )
        self._put(None, job)
        return job

    # ---------------------------------------------------------------- services

    def _create_service(self, index: int, command: CreateService) -> ApplyResult:
        spec = command.spec
        if not spec.name or not command.user:
            return refused(ErrorKind.INVALID, "a service needs a name and a user")
        existing = self._services.get(spec.name)
        if existing is not None:
            if existing.user == command.user and existing.spec == spec:
                return ApplyResult(ok=True)  # the same request again (a retried forward)
            return refused(ErrorKind.FAILED_PRECONDITION, f"service {spec.name} exists")
        if spec.template.nodes > 1:
            return refused(ErrorKind.INVALID, "a service's replica runs on one node")
        record = ServiceRecord(spec, command.user, command.at_us, index, ())
        record, made = self._add_replicas(record, spec.replicas, index, command.at_us)
        self._services[spec.name] = record
        return ApplyResult(ok=True, changed=tuple(made))

    def _owned_service(
        self, name: str, user: str, is_admin: bool, verb: str
    ) -> ServiceRecord | ApplyResult:
        """Service ``name``, when ``user`` owns it or is an admin; else the refusal."""
        record = self._services.get(name)
        if record is None:
            return refused(ErrorKind.NOT_FOUND, f"no service {name}")
        if record.user != user and not is_admin:
            return refused(
                ErrorKind.PERMISSION_DENIED,
                f"service {name} is {record.user}'s; only they or an admin may {verb} it",
            )
        return record

    def _scale_service(self, index: int, command: ScaleService) -> ApplyResult:
        record = self._owned_service(command.name, command.user, command.is_admin, "scale")
        if isinstance(record, ApplyResult):
            return record
        spec = types_pb2.ServiceSpec()
        spec.CopyFrom(record.spec)
        spec.replicas = command.replicas
        why = f"service {command.name} scaled to {command.replicas} by {command.user}"
        return self._resized(dataclasses.replace(record, spec=spec), index, why, command.at_us)

    def _resized(self, record: ServiceRecord, index: int, why: str, at: int) -> ApplyResult:
        """``record`` (its spec's replica count new) kept, with replicas made for new
        slots and the jobs of slots past the count ended."""
        replicas = record.spec.replicas
        record, changed = self._add_replicas(record, replicas, index, at)
        kept, gone = record.replica_jobs[:replicas], record.replica_jobs[replicas:]
        self._services[record.name] = dataclasses.replace(record, replica_jobs=kept)
        changed.extend(self._end_replicas(gone, why, at))
        return ApplyResult(ok=True, changed=tuple(changed))

    def _update_service(self, index: int, command: UpdateService) -> ApplyResult:
        """A new revision of the spec; the replicas are replaced later, one at a time
        (``_roll_replica``). A count named with it applies at once, as a scale would
        (new slots get the new revision)."""
        spec = command.spec
        record = self._owned_service(spec.name, command.user, command.is_admin, "update")
        if isinstance(record, ApplyResult):
            return record
        if spec.template.nodes > 1:
            return refused(ErrorKind.INVALID, "a service's replica runs on one node")
        new = types_pb2.ServiceSpec()
        new.CopyFrom(spec)
        new.replicas = spec.replicas or record.spec.replicas
        if new == record.spec:
            return ApplyResult(ok=True)  # nothing changes (or a retried forward)
        revision = record.revision + 1
        updated = dataclasses.replace(record, spec=new, revision=revision)
        why = f"service {spec.name} updated to revision {revision} by {command.user}"
        return self._resized(updated, index, why, command.at_us)

    def _roll_replica(self, index: int, command: RollReplica) -> ApplyResult:
        """One slot's replica of an older revision, or on a drained node, is replaced
        by one of the current revision: the new job is made and the old one ended in
        the same entry."""
        record = self._services.get(command.name)
        if record is None:
            return refused(ErrorKind.NOT_FOUND, f"no service {command.name}")
        slot = command.slot
        current = record.replica_jobs[slot] if slot < len(record.replica_jobs) else None
        old = self._jobs.get(current) if current is not None else None
        if (
            record.revision != command.revision
            or current != command.replaced_job
            or (old is not None and not outdated(record, old, self._drained))
        ):
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"service {command.name} changed since replica {slot} was chosen to roll",
            )
        job = self._new_job(
            replica_job_id(record, slot, index),
            replica_spec(record.spec, slot, record.revision),
            record.user, index, command.at_us,
            why=f"replica {slot} of service {record.name}, revision {record.revision}",
        )  # fmt: skip
        jobs = list(record.replica_jobs)
        jobs[slot] = job.id
        self._services[record.name] = dataclasses.replace(record, replica_jobs=tuple(jobs))
        why = f"replaced by {job.id} (service {record.name} revision {record.revision})"
        if old is not None and replica_revision(old.spec) >= record.revision:
            why = f"replaced by {job.id}: its node is drained"
        return ApplyResult(
            ok=True, changed=(job, *self._end_replicas([command.replaced_job], why, command.at_us))
        )

    def _delete_service(self, command: DeleteService) -> ApplyResult:
        record = self._owned_service(command.name, command.user, command.is_admin, "delete")
        if isinstance(record, ApplyResult):
            return record
        del self._services[command.name]
        why = f"service {command.name} deleted by {command.user}"
        return ApplyResult(
            ok=True, changed=tuple(self._end_replicas(record.replica_jobs, why, command.at_us))
        )

    def _add_replicas(
        self, record: ServiceRecord, replicas: int, index: int, at: int
    ) -> tuple[ServiceRecord, list[ClusterJob]]:
        """``record`` with a new replica job for each slot up to ``replicas``."""
        made = []
        jobs = list(record.replica_jobs)
        for slot in range(len(jobs), replicas):
            job = self._new_job(
                replica_job_id(record, slot, index),
                replica_spec(record.spec, slot, record.revision),
                record.user, index, at, why=f"replica {slot} of service {record.name}",
            )  # fmt: skip
            jobs.append(job.id)
            made.append(job)
        return dataclasses.replace(record, replica_jobs=tuple(jobs)), made

    def _end_replicas(self, job_ids: Iterable[str], why: str, at: int) -> list[ClusterJob]:
        """Cancels the jobs of replicas no longer wanted (a run is stopped first)."""
        ended = []
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.is_terminal:
                continue
            if job.state == states.PENDING:
                job = self._change(
                    job, at, state=states.CANCELLED, reason=why, cancel_reason=why,
                    not_before_us=0,
                )  # fmt: skip
            elif not job.cancel_requested:
                job = self._change(
                    job, at, reason=f"{why}; stopping the run",
                    cancel_requested=True, cancel_reason=why, preempted_by="",
                )  # fmt: skip
            ended.append(job)
        return ended

    def _restarted_replica(
        self, job: ClusterJob, ended: EndedRun, at: int, *, at_once: bool
    ) -> ClusterJob | None:
        """A service replica whose run ended runs again: its job back in the queue,
        after a backoff when its runs keep crashing early (``at_once``: none, the run
        was lost with its node). None when it does not (its service is gone, it was
        scaled away or cancelled, or it succeeded under ``on-failure``)."""
        if job.cancel_requested or not job.spec.HasField("replica_of"):
            return None
        record = self._services.get(job.spec.replica_of.service)
        slot = job.spec.replica_of.slot
        if (
            record is None
            or slot >= len(record.replica_jobs)
            or record.replica_jobs[slot] != job.id
        ):
            return None
        if not restarts(record, ended.state):
            return None
        started = ended.assignment.started_at_us
        healthy = started and at - started >= HEALTHY_RUN_US
        backoff = (
            0
            if at_once
            else retry_backoff_us(1 if healthy else job.attempts, self._retry_backoff_base_us)
        )
        return self._change(
            job, at, state=states.PENDING, exit_code=ended.exit_code,
            reason=f"restarting in {_seconds(backoff)} after: {ended.reason}",
            not_before_us=at + backoff, runs=(), gang_stop=None, preempted_by="",
            past_runs=(*job.past_runs[-(PAST_RUNS_LIMIT - 1) :], ended),
            event=f"run {ended.assignment.run_id}: {ended.reason}; replica restarting",
        )  # fmt: skip

    def service(self, name: str) -> ServiceRecord | None:
        return self._services.get(name)

    def services(self) -> list[ServiceRecord]:
        """Every service, by name."""
        return [self._services[name] for name in sorted(self._services)]

    def _cancel(self, command: CancelJob) -> ApplyResult:
        job = self._jobs.get(command.job_id)
        if job is None:
            record = self.arrays.get(command.job_id)
            if record is not None:
                return self._cancel_array(record, command)
            return refused(ErrorKind.NOT_FOUND, f"no job {command.job_id}")
        if job.user != command.user and not command.is_admin:
            return refused(
                ErrorKind.PERMISSION_DENIED,
                f"job {job.id} belongs to {job.user}; only they or an admin may cancel it",
                job,
            )
        if job.is_terminal:
            return refused(
                ErrorKind.FAILED_PRECONDITION, f"job {job.id} already ended: {job.state}", job
            )
        why = f"cancelled by {command.user}" + (f": {command.reason}" if command.reason else "")
        if job.cancel_requested and job.preempted_by:
            # Being preempted: the run stops anyway; the cancel decides its end.
            changed = self._change(
                job, command.at_us, reason=f"{why}; stopping the run",
                cancel_reason=why, preempted_by="",
            )  # fmt: skip
            return ApplyResult(ok=True, job=changed, changed=(changed,))
        if job.cancel_requested:
            return ApplyResult(ok=True, job=job)
        if job.state == states.PENDING:
            changed = self._change(
                job, command.at_us, state=states.CANCELLED, reason=why,
                cancel_reason=why, not_before_us=0,
            )  # fmt: skip
        else:
            changed = self._change(
                job, command.at_us, reason=f"{why}; stopping the run",
                cancel_requested=True, cancel_reason=why,
            )  # fmt: skip
        return ApplyResult(ok=True, job=changed, changed=(changed,))

    def _cancel_array(self, record: ArrayRecord, command: CancelJob) -> ApplyResult:
        """Cancels every task of the array that has not ended, as a cancel of each would."""
        if record.user != command.user and not command.is_admin:
            return refused(
                ErrorKind.PERMISSION_DENIED,
                f"array {record.id} is {record.user}'s; only they or an admin may cancel it",
            )
        live = [
            self._jobs[task]
            for task in record.task_ids
            if task in self._jobs and not self._jobs[task].is_terminal
        ]
        if not live:
            return refused(ErrorKind.FAILED_PRECONDITION, f"array {record.id} already ended")
        changed: list[ClusterJob] = []
        for task in live:
            cancelled = self._cancel(dataclasses.replace(command, job_id=task.id))
            changed.extend(job for job in cancelled.changed)
        return ApplyResult(ok=True, changed=tuple(changed))

    def _preempt(self, command: PreemptJob) -> ApplyResult:
        job = self._jobs.get(command.job_id)
        if job is None:
            return refused(ErrorKind.NOT_FOUND, f"no job {command.job_id}")
        if not job.is_active or job.stopping or job.assignment is None:
            return refused(
                ErrorKind.STALE, f"job {job.id} is {job.state}; there is no run to preempt", job
            )
        if not command.by_job:
            return refused(ErrorKind.INVALID, "a preemption names the job it is for", job)
        why = f"preempted by job {command.by_job}" + (
            f": {command.reason}" if command.reason else ""
        )
        changed = self._change(
            job, command.at_us, reason=f"{why}; stopping the run",
            cancel_requested=True, cancel_reason=why, preempted_by=command.by_job,
        )  # fmt: skip
        return ApplyResult(ok=True, job=changed, changed=(changed,))

    def _assign(self, term: int, index: int, command: AssignJob) -> ApplyResult:
        job = self._jobs.get(command.job_id)
        if job is None:
            return refused(ErrorKind.NOT_FOUND, f"no job {command.job_id}")
        if not command.node or not command.run_id:
            return refused(ErrorKind.INVALID, "an assignment needs a node and a run id", job)
        if job.state != states.PENDING:
            return refused(ErrorKind.STALE, f"job {job.id} is {job.state}, no longer pending", job)
        if job.not_before_us > command.at_us:
            return refused(ErrorKind.STALE, f"job {job.id} is backed off until later", job)
        if command.attempt != job.attempts + 1:
            return refused(
                ErrorKind.STALE,
                f"job {job.id} is at attempt {job.attempts + 1}, not {command.attempt}",
                job,
            )
        placements = command.placements
        wrong = _gang_shape_error(job, command)
        if wrong is not None:
            return refused(ErrorKind.INVALID, wrong, job)
        if command.run_id in self._active_runs:
            holder = self._active_runs[command.run_id]
            return refused(
                ErrorKind.INVALID, f"run id {command.run_id} is taken by job {holder}", job
            )
        # All ranks or none: one rank that cannot have its node refuses the whole gang,
        # so no gang ever holds part of what it needs (two gangs cannot deadlock).
        for placement in placements:
            if placement.node in self._drained:
                return refused(ErrorKind.STALE, f"node {placement.node} is draining", job)
            conflict = self._gpu_conflict(
                placement.node, placement.gpu_indices, shares=job.shares_gpus
            )
            if conflict is not None:
                return refused(ErrorKind.STALE, conflict, job)
        runs = tuple(
            Assignment(
                node=placement.node,
                run_id=command.run_id,
                attempt=command.attempt,
                gpu_indices=placement.gpu_indices,
                term=term,
                sequence=index,
                assigned_at_us=command.at_us,
                rank=rank,
                master_port=command.master_port,
            )
            for rank, placement in enumerate(placements)
        )
        if job.is_gang:
            where = ", ".join(f"{p.node} (GPUs {gpu_list(p.gpu_indices)})" for p in placements)
            reason = f"assigned to {len(placements)} nodes: {where}"
        else:
            reason = f"assigned to {command.node} (GPUs {gpu_list(command.gpu_indices)})"
        changed = self._change(
            job, command.at_us, state=states.SCHEDULED, reason=reason,
            attempts=command.attempt, not_before_us=0, runs=runs,
        )  # fmt: skip
        return ApplyResult(ok=True, job=changed, changed=(changed,))

    def _gpu_conflict(self, node: str, gpus: Iterable[int], *, shares: bool) -> str | None:
        holders_of = self._gpu_holders.get(node)
        if not holders_of:
            return None
        for gpu in gpus:
            holders = holders_of.get(gpu)
            if holders and not (shares and all(holders.values())):
                holder = min(holders)
                return f"GPU {gpu} of {node} is held by job {holder}"
        return None

    def _report(self, command: ReportRun) -> ApplyResult:
        job = self._jobs.get(command.job_id)
        if job is None:
            return refused(ErrorKind.NOT_FOUND, f"no job {command.job_id}")
        if command.state not in REPORTABLE_STATES:
            return refused(ErrorKind.INVALID, f"a node cannot report a run {command.state}", job)
        current = job.rank_on(command.node)
        if current is None or current.run_id != command.run_id:
            return refused(
                ErrorKind.STALE,
                f"run {command.run_id} on {command.node} is not the current run of job {job.id}",
                job,
            )
        if job.is_gang:
            changed = self._report_rank(job, current, command)
            return ApplyResult(
                ok=True, job=changed, changed=(changed,) if changed is not job else ()
            )
        at = command.at_us
        if command.state == states.STARTING:
            if job.state != states.SCHEDULED:
                return ApplyResult(ok=True, job=job)
            changed = self._change(
                job, at, state=states.STARTING, reason=f"starting on {current.node}"
            )
        elif command.state == states.RUNNING:
            if job.state == states.RUNNING:
                return ApplyResult(ok=True, job=job)
            changed = self._change(
                job, at, state=states.RUNNING,
                reason=command.reason or f"running on {current.node}",
                runs=(dataclasses.replace(current, started_at_us=at),),
            )  # fmt: skip
        else:
            changed = self._end_run(
                job, command.state, command.reason, command.exit_code, at,
                retryable=not command.timed_out,
            )  # fmt: skip
        return ApplyResult(ok=True, job=changed, changed=(changed,))

    def _report_rank(
        self, job: ClusterJob, rank: Assignment, command: ReportRun, *, with_node: bool = False
    ) -> ClusterJob:
        """A gang's rank reported: the job runs once every rank runs; the first rank
        that ends other than succeeded stops the others (``GangStop``); the run ends
        once every rank has ended. Returns ``job`` itself when nothing changed.
        ``with_node``: the rank was lost with its node (``NodeLost``)."""
        at = command.at_us
        who = f"rank {rank.rank} on {rank.node}"
        if command.state == states.STARTING:
            if job.state != states.SCHEDULED:
                return job
            return self._change(job, at, state=states.STARTING, reason=f"{who} is starting")
        if command.state == states.RUNNING:
            if rank.started_at_us:
                return job
            runs = _with_rank(job.runs, dataclasses.replace(rank, started_at_us=at))
            waiting = sum(1 for other in runs if not other.started_at_us)
            if waiting or job.stopping:
                return self._change(
                    job, at, runs=runs,
                    state=states.STARTING if job.state == states.SCHEDULED else job.state,
                    reason=job.reason if job.stopping
                    else f"{who} is running; waiting for {waiting} more rank(s)",
                )  # fmt: skip
            return self._change(
                job, at, runs=runs, state=states.RUNNING,
                reason=f"running on {len(runs)} nodes",
            )  # fmt: skip
        ended = dataclasses.replace(rank, ended=command.state, ended_at_us=at)
        runs = _with_rank(job.runs, ended)
        stop = job.gang_stop
        event: str | None = None
        if stop is None and command.state != states.SUCCEEDED and not job.cancel_requested:
            reason = command.reason or (
                f"exited with code {command.exit_code}"
                if command.exit_code is not None
                else command.state
            )
            stop = GangStop(
                state=command.state,
                exit_code=command.exit_code,
                reason=f"{who}: {reason}",
                retryable=not command.timed_out,
                with_node=command.state == states.LOST
                and (with_node or states.lost_with_its_node(reason)),
            )
            event = f"{who} {command.state}: {reason}; stopping the other ranks"
        live = sum(1 for other in runs if other.is_live)
        if live:
            if job.cancel_requested:
                why = f"{job.stop_reason}; waiting for {live} rank(s) to stop"
            elif stop is not None:
                why = event or job.reason
            else:
                why = f"{who} succeeded; waiting for {live} more rank(s)"
            return self._change(job, at, reason=why, runs=runs, gang_stop=stop)
        last = dataclasses.replace(job, runs=runs, gang_stop=stop)
        self._put(job, last)  # the last rank gives back what it held
        job = last
        if job.cancel_requested or stop is None:
            state = states.CANCELLED if job.cancel_requested else states.SUCCEEDED
            return self._end_run(job, state, "", command.exit_code, at, retryable=False)
        return self._end_run(
            job, stop.state, stop.reason, stop.exit_code, at,
            retryable=stop.retryable, with_node=stop.with_node,
        )  # fmt: skip

    def _node_lost(self, command: NodeLost) -> ApplyResult:
        active = self.active_on(command.node)
        why = f"lost with node {command.node}" + (f": {command.reason}" if command.reason else "")
        changed = tuple(
            self._end_run(
                job, states.LOST, why, None, command.at_us, retryable=True, with_node=True
            )
            if not job.is_gang
            else self._lose_rank(job, command.node, why, command.at_us)
            for job in active
        )
        return ApplyResult(ok=True, changed=changed)

    def _lose_rank(self, job: ClusterJob, node: str, why: str, at: int) -> ClusterJob:
        """A gang's rank lost with its node: as if the node reported it so."""
        rank = job.rank_on(node)
        assert rank is not None
        report = ReportRun(
            job_id=job.id, run_id=rank.run_id, node=node, state=states.LOST,
            exit_code=None, reason=why, at_us=at,
        )  # fmt: skip
        return self._report_rank(job, rank, report, with_node=True)

    def _revoke(self, command: RevokeAssignment) -> ApplyResult:
        job = self._jobs.get(command.job_id)
        if job is None:
            return refused(ErrorKind.NOT_FOUND, f"no job {command.job_id}")
        current = job.assignment
        if current is None or current.run_id != command.run_id:
            return refused(
                ErrorKind.STALE, f"run {command.run_id} is not the current run of job {job.id}", job
            )
        if job.is_gang:
            # Each rank is on a node of its own, which may have its copy: a gang's
            # ranks end one by one, as their nodes (or the leader for them) report.
            return refused(
                ErrorKind.INVALID, f"job {job.id} is a gang; its run is not taken back whole", job
            )
        if job.state != states.SCHEDULED:
            # Its node spoke of it: it was received, and only its node can end it.
            return refused(
                ErrorKind.STALE, f"run {command.run_id} is {job.state} on {current.node}", job
            )
        if job.cancel_requested and not job.preempted_by:
            # Cancelled before its node ever had it: it ends now, and is not placed again.
            ended = self._end_run(job, states.CANCELLED, "", None, command.at_us, retryable=False)
            return ApplyResult(ok=True, job=ended, changed=(ended,))
        reason = f"placed again: {command.reason}" if command.reason else "placed again"
        changed = self._change(
            job, command.at_us, state=states.PENDING, reason=reason,
            attempts=current.attempt - 1, runs=(),
            cancel_requested=False, cancel_reason="", preempted_by="",
            event=f"run {current.run_id} taken back from {current.node}: {command.reason}",
        )  # fmt: skip
        return ApplyResult(ok=True, job=changed, changed=(changed,))

    def _set_drain(self, command: SetNodeDrain) -> ApplyResult:
        if not command.node:
            return refused(ErrorKind.INVALID, "a drain names a node")
        known = self._drains.get(command.node)
        if known is not None and known.draining == command.draining:
            return ApplyResult(ok=True)
        self._drains[command.node] = DrainRecord(
            command.node, command.draining, command.by, command.at_us
        )
        self._drained = frozenset(name for name, d in self._drains.items() if d.draining)
        return ApplyResult(ok=True)

    def _forget(self, command: ForgetJobs) -> ApplyResult:
        if command.retention_us < 0:
            return refused(ErrorKind.INVALID, f"retention is {command.retention_us} µs, < 0")
        if len(command.job_ids) > MAX_FORGET_JOBS:
            return refused(ErrorKind.INVALID, f"at most {MAX_FORGET_JOBS} jobs per command")
        cutoff = command.at_us - command.retention_us
        forgotten: list[ClusterJob] = []
        for job_id in command.job_ids:
            job = self._jobs.get(job_id)
            if job is None or not job.is_terminal or job.updated_at_us > cutoff:
                continue
            self._remove(job)
            forgotten.append(job)
        return ApplyResult(ok=True, forgotten=tuple(forgotten))

    def _end_run(
        self,
        job: ClusterJob,
        run_state: str,
        reported: str,
        exit_code: int | None,
        at: int,
        *,
        retryable: bool,
        with_node: bool = False,
    ) -> ClusterJob:
        """Ends the job's current run (every rank of a gang). ``with_node``: the run
        was lost with its node (``NodeLost``), which a run its node reports lost for
        the node's sake is too."""
        runs = job.runs
        assert runs
        first = runs[0]
        run_id, attempt = first.run_id, first.attempt
        where = first.node if len(runs) == 1 else f"{len(runs)} nodes"
        lost_with_node = run_state == states.LOST and (
            with_node or states.lost_with_its_node(reported)
        )
        preempted = job.cancel_requested and bool(job.preempted_by)
        self._record_usage(job.user, runs, at, project=job.spec.project)
        past_runs = job.past_runs[-(PAST_RUNS_LIMIT - 1) :]
        unset = {"runs": (), "gang_stop": None, "not_before_us": 0}
        if preempted and run_state != states.SUCCEEDED:
            # Stopped to make room for a higher tier: not the job's doing.
            ended = EndedRun(runs, states.CANCELLED, exit_code, job.cancel_reason, at)
            return self._change(
                job, at, state=states.PENDING,
                reason=f"requeued: {job.cancel_reason} (attempt not spent)",
                exit_code=exit_code, attempts=attempt - 1,
                cancel_requested=False, cancel_reason="", preempted_by="",
                past_runs=(*past_runs, ended),
                event=f"run {run_id}: {job.cancel_reason}; requeued (attempt not spent)",
                **unset,
            )  # fmt: skip
        if job.cancel_requested and not preempted:
            run_state, reason = states.CANCELLED, job.cancel_reason
        elif run_state == states.SUCCEEDED:
            reason = reported or "exited with code 0"
        elif run_state == states.FAILED:
            reason = reported or (
                f"exited with code {exit_code}" if exit_code is not None else "failed"
            )
        elif run_state == states.LOST:
            reason = reported or "lost"
        else:
            reason = reported or f"stopped by {where}"
        job_state, job_reason, not_before = run_state, reason, 0
        retries = job.spec.retries
        ended = EndedRun(runs, run_state, exit_code, reason, at)
        restarted = self._restarted_replica(job, ended, at, at_once=lost_with_node)
        if restarted is not None:
            return restarted
        if lost_with_node and not job.cancel_requested and not job.spec.no_requeue:
            # Not the job's doing: back to the queue at once (the lease rules already
            # kept this run from running beside the next), the attempt unspent.
            what = reason if job.is_gang else f"lost with node {first.node}"
            return self._change(
                job, at, state=states.PENDING,
                reason=f"requeued: {what} (attempt not spent)",
                exit_code=exit_code, attempts=attempt - 1,
                past_runs=(*past_runs, ended),
                event=f"run {run_id}: {reason}; requeued (attempt not spent)",
                **unset,
            )  # fmt: skip
        if retryable and run_state in (states.FAILED, states.LOST) and job.attempts <= retries:
            backoff = retry_backoff_us(job.attempts, self._retry_backoff_base_us)
            job_state, not_before = states.PENDING, at + backoff
            job_reason = (
                f"retrying in {_seconds(backoff)} after: {reason} "
                f"(attempt {job.attempts + 1} of {retries + 1} next)"
            )
        return self._change(
            job, at, state=job_state, reason=job_reason, exit_code=exit_code,
            not_before_us=not_before, runs=(), gang_stop=None,
            cancel_requested=job.cancel_requested and not preempted,
            preempted_by="",
            past_runs=(*past_runs, ended),
            event=f"run {run_id}: {job_reason}",
        )  # fmt: skip

    # ---------------------------------------------------------------- changes

    def _change(
        self,
        job: ClusterJob,
        at: int,
        *,
        reason: str,
        event: str | None = None,
        **fields: object,
    ) -> ClusterJob:
        """A new record of ``job`` (indexes updated) with one history event."""
        state = fields.get("state", job.state)
        assert isinstance(state, str)
        if state in states.TERMINAL and job.spec.secrets:
            # An ended job never runs again: its secrets leave the state (so later
            # snapshots and the archive never hold them); their names stay.
            fields["spec"] = without_secret_values(job.spec)
        entry = JobEvent(at, state, event if event is not None else reason)
        history = (*job.history[-(HISTORY_LIMIT - 1) :], entry)
        changed = dataclasses.replace(
            job,
            reason=reason,
            updated_at_us=at,
            history=history,
            **fields,  # type: ignore[arg-type]
        )
        self._put(job, changed)
        return changed

    def _put(self, before: ClusterJob | None, job: ClusterJob) -> None:
        """Stores ``job`` and keeps every index in step with it."""
        self._jobs[job.id] = job
        if job.spec.HasField("array"):
            self.arrays.note(before, job)
        if before is None:
            self._by_state[job.state][job.id] = None
            if job.idempotency_key:
                self._by_idempotency.setdefault((job.user, job.idempotency_key), job.id)
            if job.is_terminal:
                self._ended[job.id] = None
        elif before.state != job.state:
            del self._by_state[before.state][job.id]
            self._by_state[job.state][job.id] = None
            if job.is_terminal:
                self._ended[job.id] = None
        old = before.runs if before is not None else ()
        new = job.runs
        if old is new:
            return
        held = {(rank.run_id, rank.node): rank for rank in old if rank.is_live}
        holding = {(rank.run_id, rank.node): rank for rank in new if rank.is_live}
        for key, rank in held.items():
            if key not in holding:
                self._release(job.id, rank)
        for key, rank in holding.items():
            if key not in held:
                self._hold(job, rank)
        old_ids = {run_id for run_id, _ in held}
        new_ids = {run_id for run_id, _ in holding}
        for run_id in old_ids - new_ids:
            del self._active_runs[run_id]
        for run_id in new_ids - old_ids:
            self._active_runs[run_id] = job.id

    def _remove(self, job: ClusterJob) -> None:
        """Takes an ended job (it holds no run) out of the state and every index."""
        assert not job.runs
        del self._jobs[job.id]
        del self._by_state[job.state][job.id]
        self._ended.pop(job.id, None)
        key = (job.user, job.idempotency_key)
        if job.idempotency_key and self._by_idempotency.get(key) == job.id:
            del self._by_idempotency[key]
        self._dependents.forget([job.id])
        if job.spec.HasField("array"):
            record = self.arrays.of(job)
            self.arrays.note(job, None)
            if record is not None and self.arrays.get(record.id) is None:
                self._dependents.forget([record.id])

    def _hold(self, job: ClusterJob, assignment: Assignment) -> None:
        self._active_by_node.setdefault(assignment.node, {})[job.id] = None
        if not assignment.gpu_indices:
            return
        holders_of = self._gpu_holders.setdefault(assignment.node, {})
        for gpu in assignment.gpu_indices:
            holders_of.setdefault(gpu, {})[job.id] = job.shares_gpus

    def _release(self, job_id: str, assignment: Assignment) -> None:
        active = self._active_by_node[assignment.node]
        del active[job_id]
        if not active:
            del self._active_by_node[assignment.node]
        if not assignment.gpu_indices:
            return
        holders_of = self._gpu_holders[assignment.node]
        for gpu in assignment.gpu_indices:
            holders = holders_of[gpu]
            del holders[job_id]
            if not holders:
                del holders_of[gpu]
        if not holders_of:
            del self._gpu_holders[assignment.node]

    # ---------------------------------------------------------------- queries

    def job(self, job_id: str) -> ClusterJob | None:
        return self._jobs.get(job_id)

    def jobs(
        self,
        *,
        states: Collection[str] | None = None,
        user: str | None = None,
        queue: str | None = None,
    ) -> list[ClusterJob]:
        """The jobs matching every filter given, in submit order."""
        if states is None:
            found: Iterable[ClusterJob] = self._jobs.values()
        else:
            ids = [job_id for state in set(states) for job_id in self._by_state.get(state, ())]
            found = sorted((self._jobs[job_id] for job_id in ids), key=_submit_order)
        return [
            job
            for job in found
            if (user is None or job.user == user) and (queue is None or job.queue == queue)
        ]

    def has_pending(self) -> bool:
        """Whether any job waits to be placed (due or backed off)."""
        return bool(self._by_state[states.PENDING])

    def pending_due(self, now_us: int) -> list[ClusterJob]:
        """Pending jobs whose backoff (if any) is over at ``now_us``, in submit order."""
        due = [self._jobs[job_id] for job_id in self._by_state[states.PENDING]]
        return sorted((job for job in due if job.not_before_us <= now_us), key=_submit_order)

    def placeable(self, now_us: int) -> list[ClusterJob]:
        """``pending_due`` less the jobs held back: those waiting on another job's
        end (``spec.after``), and an array's tasks beyond what its ``%P`` leaves room
        for (its lowest indices first). What placement plans."""
        due = self.pending_due(now_us)
        if len(self.arrays):
            due.sort(key=_submit_then_index)
        room: dict[str, int] = {}
        placeable = []
        for job in due:
            if job.spec.after and self._dependency_status(job.spec).verdict is not Verdict.MET:
                continue
            if job.spec.array.max_running:
                record = self.arrays.of(job)
                if record is not None:
                    left = room.get(record.id, record.max_running - record.active)
                    room[record.id] = left - 1
                    if left <= 0:
                        continue
            placeable.append(job)
        return placeable

    def hold_reason(self, job: ClusterJob) -> str:
        """Why placement holds ``job`` back (``placeable``): the dependency it waits
        on, or its array's ``%P``; empty when nothing does (a pending task of an array
        with a limit always names it: one not held would be in the plan)."""
        if job.state != states.PENDING:
            return ""
        if job.spec.after:
            status = self._dependency_status(job.spec)
            if status.verdict is not Verdict.MET:
                return status.why
        if job.spec.array.max_running:
            record = self.arrays.of(job)
            if record is not None:
                return (
                    f"waiting: array {record.id} runs at most {record.max_running} tasks "
                    f"at once ({record.active} running)"
                )
        return ""

    def array(self, array_id: str) -> ArrayRecord | None:
        """The array with this id; None if the state holds none."""
        return self.arrays.get(array_id)

    def becomes_due(self, after_us: int, until_us: int) -> bool:
        """Whether a pending job's backoff ends in (``after_us``, ``until_us``]: the
        jobs ``pending_due`` gives differ between those two times."""
        jobs = self._jobs
        return any(
            after_us < jobs[job_id].not_before_us <= until_us
            for job_id in self._by_state[states.PENDING]
        )

    def next_due_us(self) -> int | None:
        """When the earliest backed-off pending job becomes due; None if none waits so."""
        times = [self._jobs[job_id].not_before_us for job_id in self._by_state[states.PENDING]]
        return min((at for at in times if at), default=None)

    def active_on(self, node: str) -> list[ClusterJob]:
        """Jobs with a run assigned to ``node`` (scheduled, starting, running), in submit order."""
        ids = self._active_by_node.get(node, ())
        return sorted((self._jobs[job_id] for job_id in ids), key=_submit_order)

    def nodes_with_runs(self) -> list[str]:
        """Every node some active assignment names, sorted."""
        return sorted(self._active_by_node)

    def counts_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (every state, zeros included)."""
        return {state: len(ids) for state, ids in self._by_state.items()}

    def by_idempotency(self, user: str, key: str) -> ClusterJob | None:
        """The job a submission by ``user`` with idempotency ``key`` made; None if none."""
        job_id = self._by_idempotency.get((user, key)) if key else None
        return self._jobs[job_id] if job_id is not None else None

    def forgettable(self, now_us: int, retention_us: int, limit: int) -> list[str]:
        """Up to ``limit`` ids of jobs that ended ``retention_us`` or more before
        ``now_us``, about the longest ended first (what the leader's ForgetJobs names)."""
        cutoff = now_us - retention_us
        found: list[str] = []
        jobs = self._jobs
        for job_id in self._ended:
            ended_at = jobs[job_id].updated_at_us
            if ended_at <= cutoff:
                found.append(job_id)
                if len(found) >= limit:
                    break
            elif ended_at > cutoff + ENDED_ORDER_SLACK_US:
                break
        return found

    def drains(self) -> list[DrainRecord]:
        """Every node the log holds a drain (or undrain) of, by name."""
        return [self._drains[name] for name in sorted(self._drains)]

    def drained_nodes(self) -> frozenset[str]:
        """Nodes drained in the log: placement gives them nothing new."""
        return self._drained

    def __len__(self) -> int:
        return len(self._jobs)

    # ------------------------------------------------------------ audit trail

    def _reset_audit(self) -> None:
        self._audit_count = 0
        self._audit_head = GENESIS_HASH
        self._audit_origins: dict[str, int] = {}
        """origin → the highest outbox id applied from it."""
        self._audit_restored: tuple[int, bytes] | None = None

    def _record_audit(self, command: RecordAudit) -> ApplyResult:
        if not command.origin:
            return refused(ErrorKind.INVALID, "audited calls name their origin")
        if len(command.calls) > MAX_AUDIT_CALLS:
            return refused(ErrorKind.INVALID, f"at most {MAX_AUDIT_CALLS} audited calls per entry")
        last = self._audit_origins.get(command.origin, 0)
        fresh: list[AuditCall] = []
        for call in command.calls:
            if call.origin_id > last:  # else shipped before: a retry
                fresh.append(call)
                last = call.origin_id
        if not fresh:
            return ApplyResult(ok=True)
        chained = extend(self._audit_head, self._audit_count, command.origin, fresh)
        self._audit_origins[command.origin] = last
        self._audit_count = chained[-1].seq
        self._audit_head = chained[-1].hash
        return ApplyResult(ok=True, audited=tuple(chained))

    def audit_head(self) -> tuple[int, bytes]:
        """The audit chain's length and its last entry's hash (``GENESIS_HASH``: none)."""
        return self._audit_count, self._audit_head

    def audit_origin_last(self, origin: str) -> int:
        """The highest outbox id applied from ``origin``; 0 if none."""
        return self._audit_origins.get(origin, 0)

    @property
    def audit_restored(self) -> tuple[int, bytes] | None:
        """The chain head (length, hash) the last restored snapshot held, if it held
        one: the entries up to it were never applied here."""
        return self._audit_restored

    def _audit_head_message(self) -> control_pb2.ControlAuditHead | None:
        if not self._audit_count:
            return None
        return control_pb2.ControlAuditHead(
            count=self._audit_count,
            head=self._audit_head,
            origins=[
                control_pb2.ControlAuditOrigin(origin=origin, last_id=last)
                for origin, last in sorted(self._audit_origins.items())
            ],
        )

    def _restore_audit(self, head: _AuditHead | None) -> None:
        self._reset_audit()
        if head is None:
            return
        self._audit_count, self._audit_head, self._audit_origins = head
        self._audit_restored = (self._audit_count, self._audit_head)

    # ------------------------------------------------------ certificate revocations

    def _reset_revocations(self) -> None:
        self._revocations: list[Revocation] = []
        """In log order (ascending index)."""

    def _revoke_certificate(self, index: int, command: RevokeCertificate) -> ApplyResult:
        if bool(command.name) == bool(command.serial):
            return refused(
                ErrorKind.INVALID, "a revocation names a certificate or a name, not both"
            )
        if command.serial and not _is_serial(command.serial):
            return refused(ErrorKind.INVALID, f"serial {command.serial!r} is not lowercase hex")
        if command.name:
            try:
                validate_name(command.name)
            except InvalidNameError as exc:
                return refused(ErrorKind.INVALID, f"cannot revoke {command.name!r}: {exc}")
        self._revocations.append(
            Revocation(
                index=index,
                name=command.name,
                serial=command.serial,
                revoked_at_us=command.at_us,
                by=command.by,
                reason=command.reason,
            )
        )
        return ApplyResult(ok=True)

    def revocations(self) -> list[Revocation]:
        """Every revocation the log holds, in log order."""
        return list(self._revocations)

    @property
    def revocations_revision(self) -> int:
        """The log index of the newest revocation; 0 when none."""
        return self._revocations[-1].index if self._revocations else 0

    def _revocation_messages(self) -> list[control_pb2.ControlRevocation]:
        return [
            control_pb2.ControlRevocation(
                name=r.name,
                serial=r.serial,
                reason=r.reason,
                by=r.by,
                at_us=r.revoked_at_us,
                index=r.index,
            )
            for r in self._revocations
        ]

    # -------------------------------------------------------------- usage

    def _record_usage(
        self, user: str, ranks: Iterable[Assignment], ended_at_us: int, *, project: str = ""
    ) -> None:
        """Adds the GPU-seconds of a run that ended (each rank from its start to its
        own end) to its user's bucket of the day (with the group the lab policy puts
        them in now), and its project's: what fair share and ``murmur usage`` read.
        A rank that never ran used nothing."""
        gpu_seconds = sum(
            max(0, (rank.ended_at_us or ended_at_us) - rank.started_at_us)
            / 1e6
            * len(rank.gpu_indices)
            for rank in ranks
            if rank.started_at_us and rank.gpu_indices
        )
        if gpu_seconds <= 0:
            return
        group = self.lab_policy.group_of(user)
        day = ended_at_us // DAY_US
        key = (user, group.name if group is not None else "", day)
        self._usage[key] = self._usage.get(key, 0.0) + gpu_seconds
        if project:
            by_project = (project, day)
            self._project_usage[by_project] = self._project_usage.get(by_project, 0.0) + gpu_seconds
        if day > self._usage_newest_day:
            self._usage_newest_day = day
            oldest = day - USAGE_KEPT_DAYS
            for stale in [k for k in self._usage if k[2] < oldest]:
                del self._usage[stale]
            for gone in [k for k in self._project_usage if k[1] < oldest]:
                del self._project_usage[gone]

    def project_usage(self) -> list[tuple[str, int, float]]:
        """GPU-seconds by (project, day), oldest day first."""
        return [
            (project, day, seconds)
            for (project, day), seconds in sorted(
                self._project_usage.items(), key=lambda item: (item[0][1], item[0][0])
            )
        ]

    def usage_buckets(self) -> list[UsageBucket]:
        """GPU-seconds by user, group and day, oldest day first."""
        return [
            UsageBucket(user, group, day, seconds)
            for (user, group, day), seconds in sorted(
                self._usage.items(), key=lambda item: (item[0][2], item[0][0], item[0][1])
            )
        ]

    # -------------------------------------------------------------- lab policy

    def _set_lab_policy(self, index: int, command: SetLabPolicy) -> ApplyResult:
        try:
            policy = parse_policy(command.text) if command.text else NO_LAB_POLICY
        except PolicyError as exc:
            return refused(ErrorKind.INVALID, f"the policy is not valid: {exc}")
        self.lab_policy = policy
        self.lab_policy_record = LabPolicyRecord(command.text, command.by, command.at_us, index)
        return ApplyResult(ok=True)

    # -------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """The whole state as ``murmur.v1.ControlSnapshot`` bytes (deterministic)."""
        return self.snapshot_encoder()()

    def snapshot_encoder(self) -> Callable[[], bytes]:
        """``snapshot`` in two halves: this call takes the state as it is now (a list
        of its immutable job records, O(jobs) but cheap); the function it returns
        encodes them (the costly half: ~50 µs a job), in any thread, whatever the
        state has become meanwhile."""
        applied_index = self._applied_index
        jobs = list(self._jobs.values())
        drains = self.drains()
        audit = self._audit_head_message()
        revocations = self._revocation_messages()
        join_tokens = self.join_tokens.messages()
        ca_changes = self.ca_rotations.messages()
        lab_policy = self.lab_policy_record
        usage = self.usage_buckets()
        services = self.services()
        api_keys = self.api_keys.frozen()
        arrays = self.arrays.messages()
        array_specs = {record.id: record.spec for record in self.arrays}
        project_usage = self.project_usage()
        cluster_level = self.cluster_level
        user_certificates = self.user_certificates.messages()

        def encode() -> bytes:
            message = control_pb2.ControlSnapshot(
                format=SNAPSHOT_FORMAT_WITH_DRAINS if drains else SNAPSHOT_FORMAT,
                applied_index=applied_index,
            )
            message.jobs.extend(_job_message(job, array_specs) for job in jobs)
            message.drains.extend(codec.drain_to_message(drain) for drain in drains)
            if audit is not None:
                message.format = SNAPSHOT_FORMAT_WITH_AUDIT
                message.audit.CopyFrom(audit)
            if revocations:
                message.format = SNAPSHOT_FORMAT_WITH_REVOCATIONS
                message.revocations.extend(revocations)
            if join_tokens:
                message.format = SNAPSHOT_FORMAT_WITH_JOIN_TOKENS
                message.join_tokens.extend(join_tokens)
            if ca_changes:
                message.format = SNAPSHOT_FORMAT_WITH_CA_CHANGES
                message.ca_changes.extend(ca_changes)
            if usage:
                message.format = SNAPSHOT_FORMAT_WITH_USAGE
                message.usage.extend(
                    control_pb2.ControlUsage(
                        user=b.user, group=b.group, day=b.day, gpu_seconds=b.gpu_seconds
                    )
                    for b in usage
                )
            if lab_policy is not None:
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_LAB_POLICY)
                message.lab_policy.CopyFrom(
                    control_pb2.ControlLabPolicy(
                        text=lab_policy.text,
                        by=lab_policy.by,
                        at_us=lab_policy.at_us,
                        index=lab_policy.index,
                    )
                )
            if any(job.other_ranks for job in message.jobs):
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_GANGS)
            if services:
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_SERVICES)
                message.services.extend(codec.service_to_message(s) for s in services)
            if any(service.revision > 1 for service in services):
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_SERVICE_REVISIONS)
            if api_keys is not None:
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_API_KEYS)
                message.api_keys.CopyFrom(api_keys.message())
            message.arrays.extend(arrays)
            message.project_usage.extend(
                control_pb2.ControlProjectUsage(project=project, day=day, gpu_seconds=seconds)
                for project, day, seconds in project_usage
            )
            if arrays or project_usage or any(job.spec.after or job.spec.project for job in jobs):
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_ARRAYS)
            if cluster_level > BASE_LEVEL:
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_CLUSTER_LEVEL)
                message.cluster_protocol_level = cluster_level
            if user_certificates:
                message.format = max(message.format, SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES)
                message.user_certificates.extend(user_certificates)
            return message.SerializeToString(deterministic=True)

        return encode

    def restore(self, data: bytes) -> None:
        """Replaces the whole state with a snapshot's (the Raft runner's ``restore``).

        The retry backoff stays this state's own (a cluster-wide setting).

        Raises:
            ControlSnapshotError: not a snapshot this version can restore; the state is
                left as it was. ``SnapshotTooNewError`` (also an ``UpgradeRequiredError``)
                when a newer version wrote it: a format or a protocol level not known here.
        """
        message = control_pb2.ControlSnapshot()
        try:
            message.ParseFromString(data)
        except Exception as exc:
            raise ControlSnapshotError(f"not a control snapshot: {exc}") from None
        if message.format not in (
            SNAPSHOT_FORMAT,
            SNAPSHOT_FORMAT_WITH_DRAINS,
            SNAPSHOT_FORMAT_WITH_AUDIT,
            SNAPSHOT_FORMAT_WITH_REVOCATIONS,
            SNAPSHOT_FORMAT_WITH_JOIN_TOKENS,
            SNAPSHOT_FORMAT_WITH_CA_CHANGES,
            SNAPSHOT_FORMAT_WITH_LAB_POLICY,
            SNAPSHOT_FORMAT_WITH_USAGE,
            SNAPSHOT_FORMAT_WITH_GANGS,
            SNAPSHOT_FORMAT_WITH_SERVICES,
            SNAPSHOT_FORMAT_WITH_SERVICE_REVISIONS,
            SNAPSHOT_FORMAT_WITH_API_KEYS,
            SNAPSHOT_FORMAT_WITH_ARRAYS,
            SNAPSHOT_FORMAT_WITH_CLUSTER_LEVEL,
            SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES,
        ):
            raise SnapshotTooNewError(
                f"snapshot format {message.format} is not known here (a newer murmur wrote it)"
            )
        cluster_level = max(message.cluster_protocol_level, BASE_LEVEL)
        if cluster_level > self._protocol_level:
            raise SnapshotTooNewError(
                f"the snapshot is of a cluster at control protocol {cluster_level} "
                f"({feature(cluster_level)}); this node speaks protocol {self._protocol_level}"
            )
        try:
            arrays = ArrayTable.from_messages(list(message.arrays))
        except ValueError as exc:
            raise ControlSnapshotError(str(exc)) from None
        jobs = sorted((_job_of(job, arrays) for job in message.jobs), key=_submit_order)
        if len({job.id for job in jobs}) != len(jobs):
            raise ControlSnapshotError("the snapshot holds a job id twice")
        drains = [codec.drain_from_message(drain) for drain in message.drains]
        if len({drain.node for drain in drains}) != len(drains):
            raise ControlSnapshotError("the snapshot holds a node's drain twice")
        audit = _audit_head_of(message)
        revocations = _revocations_of(message)
        join_tokens = JoinTokenTable.from_messages(list(message.join_tokens))
        ca_rotations = CaRotationTable.from_messages(list(message.ca_changes))
        api_keys = ApiKeyTable.from_message(message.api_keys)
        user_certificates = UserCertificateTable.from_messages(message.user_certificates)
        lab_policy_record, lab_policy = _lab_policy_of(message)
        usage = {(u.user, u.group, u.day): u.gpu_seconds for u in message.usage}
        services = {s.spec.name: codec.service_from_message(s) for s in message.services}
        if len(services) != len(message.services):
            raise ControlSnapshotError("the snapshot holds a service twice")
        if len(usage) != len(message.usage):
            raise ControlSnapshotError("the snapshot holds a usage bucket twice")
        project_usage = {(u.project, u.day): u.gpu_seconds for u in message.project_usage}
        if len(project_usage) != len(message.project_usage):
            raise ControlSnapshotError("the snapshot holds a project's usage of a day twice")
        self._reset()
        self._applied_index = message.applied_index
        self.arrays = arrays
        for job in jobs:
            self._put(None, job)
        arrays.restored_unsuccessful(list(message.arrays))
        for job in self._jobs.values():
            if (
                job.spec.after
                and job.state == states.PENDING
                and self._dependency_status(job.spec).verdict is Verdict.WAITING
            ):
                self._dependents.register(job)
        self._project_usage = project_usage
        by_end = sorted(self._ended, key=lambda job_id: _end_order(self._jobs[job_id]))
        self._ended = dict.fromkeys(by_end)
        self._drains = {drain.node: drain for drain in sorted(drains, key=lambda d: d.node)}
        self._drained = frozenset(drain.node for drain in drains if drain.draining)
        self._restore_audit(audit)
        self._revocations = revocations
        self.join_tokens = join_tokens
        self.api_keys = api_keys
        self.ca_rotations = ca_rotations
        self.lab_policy_record = lab_policy_record
        self.lab_policy = lab_policy
        self._usage = usage
        self._services = services
        self._usage_newest_day = max((day for _, _, day in usage), default=0)
        self.cluster_level = cluster_level
        self.user_certificates = user_certificates

    @classmethod
    def from_snapshot(
        cls, data: bytes, *, retry_backoff_base_us: int = DEFAULT_RETRY_BACKOFF_BASE_US
    ) -> ControlState:
        """A new state restored from ``snapshot()`` bytes.

        Raises:
            ControlSnapshotError: not a snapshot this version can restore.
        """
        state = cls(retry_backoff_base_us=retry_backoff_base_us)
        state.restore(data)
        return state


_AuditHead = tuple[int, bytes, dict[str, int]]
"""The audit chain's length, head hash and origins' last ids, as a snapshot holds them."""


def _audit_head_of(message: control_pb2.ControlSnapshot) -> _AuditHead | None:
    """The audit chain's head a snapshot holds, checked; None when it holds none."""
    if not message.HasField("audit") or not message.audit.count:
        return None
    audit = message.audit
    if len(audit.head) != len(GENESIS_HASH):
        raise ControlSnapshotError(f"the audit chain's head is {len(audit.head)} bytes, not 32")
    origins = {origin.origin: origin.last_id for origin in audit.origins}
    if len(origins) != len(audit.origins):
        raise ControlSnapshotError("the snapshot holds an audit origin twice")
    return audit.count, bytes(audit.head), origins


def _with_rank(runs: tuple[Assignment, ...], rank: Assignment) -> tuple[Assignment, ...]:
    """``runs`` with ``rank`` in its place."""
    return tuple(rank if other.rank == rank.rank else other for other in runs)


def _gang_shape_error(job: ClusterJob, command: AssignJob) -> str | None:
    """Why ``command`` does not fit ``job``'s shape (one rank per node asked, each on a
    node of its own, with the GPUs a rank asks for); None when it does."""
    placements = command.placements
    nodes = max(1, job.spec.nodes)
    if len(placements) != nodes:
        return f"job {job.id} asks for {nodes} node(s), assigned {len(placements)}"
    if len({placement.node for placement in placements}) != len(placements):
        return f"job {job.id} is a gang: each rank needs a node of its own"
    if any(not placement.node for placement in placements):
        return "an assignment needs a node for every rank"
    if nodes > 1 and not 0 < command.master_port < 65536:
        return f"gang job {job.id} needs a rendezvous port, got {command.master_port}"
    for placement in placements:
        gpus = placement.gpu_indices
        if len(set(gpus)) != len(gpus) or len(gpus) != job.spec.gpus.count:
            return (
                f"job {job.id} asks for {job.spec.gpus.count} GPUs per rank, "
                f"assigned {list(gpus)} on {placement.node}"
            )
    return None


def _submit_order(job: ClusterJob) -> int:
    return job.submit_order


def _submit_then_index(job: ClusterJob) -> tuple[int, int]:
    """Submit order, then an array's tasks by index (they share their submit order)."""
    return job.submit_order, task_index(job.id)


def _plainly_pending(job: ClusterJob) -> bool:
    """A new job placement may take as any: pending, waiting on nothing, not a task
    of an array with a limit."""
    return job.state == states.PENDING and not job.spec.after and not job.spec.array.max_running


def _made_id(job: ClusterJob) -> str:
    """The id the submission that made ``job`` gave: its own, or its array's."""
    split = split_task_id(job.id) if job.spec.HasField("array") else None
    return split[0] if split is not None else job.id


def _job_message(
    job: ClusterJob, array_specs: dict[str, types_pb2.JobSpec]
) -> control_pb2.ControlJob:
    """A job's snapshot record; a task's without the spec it shares with its array."""
    split = split_task_id(job.id) if job.spec.HasField("array") else None
    if split is None or array_specs.get(split[0]) is not job.spec:
        return codec.job_to_message(job)
    message = codec.job_to_message(dataclasses.replace(job, spec=_NO_SPEC))
    message.ClearField("spec")
    return message


_NO_SPEC = types_pb2.JobSpec()


def _job_of(message: control_pb2.ControlJob, arrays: ArrayTable) -> ClusterJob:
    """The job a snapshot record holds; a task without a spec gets its array's.

    Raises:
        ControlSnapshotError: a job without a spec that is no array's task.
    """
    job = codec.job_from_message(message)
    if message.HasField("spec"):
        return job
    split = split_task_id(job.id)
    record = arrays.get(split[0]) if split is not None else None
    if record is None:
        raise ControlSnapshotError(f"job {job.id} has no spec and no array")
    return dataclasses.replace(job, spec=record.spec)


def _end_order(job: ClusterJob) -> tuple[int, int]:
    return job.updated_at_us, job.submit_order


def _with_time_limit(spec: types_pb2.JobSpec, limit_us: int) -> types_pb2.JobSpec:
    """A copy of ``spec`` with ``limit_us`` as its time limit."""
    limited = types_pb2.JobSpec()
    limited.CopyFrom(spec)
    limited.time_limit.FromMicroseconds(limit_us)
    return limited


def _lab_policy_of(
    message: control_pb2.ControlSnapshot,
) -> tuple[LabPolicyRecord | None, LabPolicy]:
    """The snapshot's lab policy, parsed.

    Raises:
        ControlSnapshotError: its text does not parse (this version is older than the
            one that applied it, or the snapshot is corrupt).
    """
    if not message.HasField("lab_policy"):
        return None, NO_LAB_POLICY
    held = message.lab_policy
    try:
        policy = parse_policy(held.text) if held.text else NO_LAB_POLICY
    except PolicyError as exc:
        raise ControlSnapshotError(f"the snapshot's lab policy does not parse: {exc}") from None
    return LabPolicyRecord(held.text, held.by, held.at_us, held.index), policy


_SERIAL = re.compile(r"[0-9a-f]+")


def _is_serial(text: str) -> bool:
    return _SERIAL.fullmatch(text) is not None


def _revocations_of(message: control_pb2.ControlSnapshot) -> list[Revocation]:
    """The snapshot's revocations, in log order.

    Raises:
        ControlSnapshotError: two with one index.
    """
    revocations = sorted(
        (
            Revocation(
                index=r.index,
                name=r.name,
                serial=r.serial,
                revoked_at_us=r.at_us,
                by=r.by,
                reason=r.reason,
            )
            for r in message.revocations
        ),
        key=lambda revocation: revocation.index,
    )
    if len({r.index for r in revocations}) != len(revocations):
        raise ControlSnapshotError("the snapshot holds a revocation's entry twice")
    return revocations
