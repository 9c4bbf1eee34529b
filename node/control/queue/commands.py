"""The commands of the control log, and their bytes (``murmur.v1.ControlCommand``).

Each command is a frozen value; ``encode`` and ``decode`` are the one place that maps
them to and from protobuf, so a field added to a command is added here and in
``proto/murmur/v1/control.proto`` and nowhere else. Every time is a value in the
command (microseconds since the epoch, read by the leader), never a clock read at
apply time: voters apply the same bytes to the same state and get the same result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from murmur.node.control.queue.audit_chain import AuditCall
from murmur.node.control.queue.protocol import BASE_LEVEL, required_level
from murmur.node.jobspec import states
from murmur.v1 import apikeys_pb2, control_pb2, trust_pb2, types_pb2

REPORTABLE_STATES = frozenset(
    {
        states.STARTING,
        states.RUNNING,
        states.SUCCEEDED,
        states.FAILED,
        states.CANCELLED,
        states.LOST,
    }
)
"""The run states a node may report."""


class CommandDecodeError(ValueError):
    """Bytes that are not a control command this version knows."""


@dataclass(frozen=True, slots=True)
class SubmitJob:
    """A job was submitted; the spec was validated by the node that took the request.

    A retry with the same (``user``, ``idempotency_key``) yields the job the first one
    made. An empty key never matches.
    """

    job_id: str
    spec: types_pb2.JobSpec
    user: str
    idempotency_key: str
    submitted_at_us: int


MAX_BATCH_JOBS = 1000
"""Submissions per SubmitJobs entry: bounds the entry (a spec is at most a few KiB)."""


@dataclass(frozen=True, slots=True)
class SubmitJobs:
    """Several submissions in one entry (``ClusterService.SubmitJobs``): the state
    makes every one of them or none. A submission's dependencies may name a job
    made earlier in the same entry."""

    jobs: tuple[SubmitJob, ...]


def _submit_to_message(command: SubmitJob) -> control_pb2.SubmitJobCommand:
    return control_pb2.SubmitJobCommand(
        job_id=command.job_id,
        spec=command.spec,
        user=command.user,
        idempotency_key=command.idempotency_key,
        submitted_at_us=command.submitted_at_us,
    )


def _submit_from_message(submit: control_pb2.SubmitJobCommand) -> SubmitJob:
    return SubmitJob(
        job_id=submit.job_id,
        spec=submit.spec,
        user=submit.user,
        idempotency_key=submit.idempotency_key,
        submitted_at_us=submit.submitted_at_us,
    )


@dataclass(frozen=True, slots=True)
class CancelJob:
    """The owner (``user``) or an admin cancels a job."""

    job_id: str
    user: str
    is_admin: bool
    reason: str
    at_us: int


@dataclass(frozen=True, slots=True)
class AssignJob:
    """The leader placed a pending job on ``node``; the entry's (term, index) fences it.

    A gang (``spec.nodes`` > 1) is placed whole in one entry: ``node`` and
    ``gpu_indices`` are rank 0's, ``other_ranks`` the rest in rank order, each on a
    node of its own, and ``master_port`` the rendezvous port on rank 0's node.
    """

    job_id: str
    node: str
    run_id: str
    attempt: int
    gpu_indices: tuple[int, ...]
    at_us: int
    other_ranks: tuple[RankPlacement, ...] = ()
    master_port: int = 0

    @property
    def placements(self) -> tuple[RankPlacement, ...]:
        """Every rank's (node, GPUs), rank 0 first."""
        return (RankPlacement(self.node, self.gpu_indices), *self.other_ranks)


@dataclass(frozen=True, slots=True)
class RankPlacement:
    """Where one rank of a gang runs: its node and its GPUs there."""

    node: str
    gpu_indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReportRun:
    """A node's report of one of its runs.

    Attributes:
        state: one of ``REPORTABLE_STATES`` (the names of ``murmur.node.jobspec.states``).
        timed_out: the run was stopped at its time limit; such a failure is not retried.
    """

    job_id: str
    run_id: str
    node: str
    state: str
    exit_code: int | None
    reason: str
    at_us: int
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class NodeLost:
    """The leader decided that every run on ``node`` is lost (its leases expired)."""

    node: str
    reason: str
    at_us: int


@dataclass(frozen=True, slots=True)
class RevokeAssignment:
    """The leader takes back the assignment ``run_id`` of a job whose node surely never
    received it (the node refused the connection, so no copy can run there): the job
    goes back to the queue without spending an attempt."""

    job_id: str
    run_id: str
    reason: str
    at_us: int


@dataclass(frozen=True, slots=True)
class SetNodeDrain:
    """``node`` is drained (placement gives it nothing new) or undrained.

    Proposed by the node itself when an admin asks, before it answers; ``at_us`` is
    the node's own time, increasing from one of its drains to the next.
    """

    node: str
    draining: bool
    by: str
    at_us: int


MAX_FORGET_JOBS = 1000
"""Job ids per ForgetJobs command: bounds the entry (about 16 bytes an id)."""


@dataclass(frozen=True, slots=True)
class ForgetJobs:
    """The leader forgets ended jobs whose end is ``retention_us`` or more before
    ``at_us``; every voter checks each job itself, and skips one that is not ended or
    not that old."""

    job_ids: tuple[str, ...]
    retention_us: int
    at_us: int


# ---------------------------------------------------------------- audit trail

MAX_AUDIT_CALLS = 512
"""Calls per RecordAudit command: bounds the entry (a call is a few hundred bytes)."""


@dataclass(frozen=True, slots=True)
class RecordAudit:
    """Audited calls from one node's outbox (``origin``: ``"<node>/<incarnation>"``),
    in id order, for every voter's audit chain (``audit_chain.py``)."""

    origin: str
    calls: tuple[AuditCall, ...]


def _audit_to_message(command: RecordAudit) -> control_pb2.RecordAuditCommand:
    return control_pb2.RecordAuditCommand(
        origin=command.origin,
        calls=[
            control_pb2.ControlAuditCall(
                origin_id=call.origin_id,
                node=call.node,
                time_us=call.time_us,
                user=call.user,
                role=call.role,
                action=call.action,
                target=call.target,
                result=call.result,
                detail=call.detail,
            )
            for call in command.calls
        ],
    )


def _audit_from_message(message: control_pb2.RecordAuditCommand) -> RecordAudit:
    return RecordAudit(
        origin=message.origin,
        calls=tuple(
            AuditCall(
                origin_id=call.origin_id,
                node=call.node,
                time_us=call.time_us,
                user=call.user,
                role=call.role,
                action=call.action,
                target=call.target,
                result=call.result,
                detail=call.detail,
            )
            for call in message.calls
        ),
    )


# ---------------------------------------------------------------------------

# ------------------------------------------------------------- revocations


@dataclass(frozen=True, slots=True)
class RevokeCertificate:
    """An admin revoked certificates (``murmur cert revoke``, ``murmur node remove``):
    by ``name``, every certificate with that common name whose validity starts at or
    before ``at_us``; by ``serial`` (lowercase hex), exactly that one. Exactly one of
    the two is set; ``at_us`` is the admin's node's clock."""

    name: str
    serial: str
    reason: str
    by: str
    at_us: int


def _revocation_to_message(command: RevokeCertificate) -> control_pb2.RevokeCertificateCommand:
    return control_pb2.RevokeCertificateCommand(
        name=command.name,
        serial=command.serial,
        reason=command.reason,
        by=command.by,
        at_us=command.at_us,
    )


def _revocation_from_message(message: control_pb2.RevokeCertificateCommand) -> RevokeCertificate:
    return RevokeCertificate(
        name=message.name,
        serial=message.serial,
        reason=message.reason,
        by=message.by,
        at_us=message.at_us,
    )


# ---------------------------------------------------------- user certificates


@dataclass(frozen=True, slots=True)
class RecordUserCertificate:
    """A CA holder signed a user's certificate (``murmur user add|renew``). The node
    that signed commits it, read from the certificate it made, so ``murmur user list``
    can answer from any node's replica: the CA key alone knows nothing of what it
    signed, and a node's local event log holds only what that node signed."""

    name: str
    role: types_pb2.Role.ValueType
    """Admin, member or viewer."""
    serial: str
    """Lowercase hex, no prefix, as ``CertificateIdentity.serial``."""
    not_before_us: int
    not_after_us: int
    issued_by: str
    """The admin who asked."""
    signed_by: str
    """The node that signed."""


def user_certificate_to_message(
    command: RecordUserCertificate,
) -> control_pb2.RecordUserCertificateCommand:
    return control_pb2.RecordUserCertificateCommand(
        name=command.name, role=command.role, serial=command.serial,
        not_before_us=command.not_before_us, not_after_us=command.not_after_us,
        issued_by=command.issued_by, signed_by=command.signed_by,
    )  # fmt: skip


def user_certificate_from_message(
    message: control_pb2.RecordUserCertificateCommand,
) -> RecordUserCertificate:
    return RecordUserCertificate(
        name=message.name, role=message.role, serial=message.serial,
        not_before_us=message.not_before_us, not_after_us=message.not_after_us,
        issued_by=message.issued_by, signed_by=message.signed_by,
    )  # fmt: skip


# -------------------------------------------------------------- CA rotation


@dataclass(frozen=True, slots=True)
class AddTrustedCa:
    """A new lab CA joins the trusted ones and signs from now on (``murmur ca rotate
    start``, node/trust_anchors.py); ``cross_certificate_pem`` is it certified by the
    CA it succeeds."""

    certificate_pem: bytes
    cross_certificate_pem: bytes
    by: str
    at_us: int


@dataclass(frozen=True, slots=True)
class RetireCa:
    """The lab CA of ``fingerprint`` is no longer trusted (``murmur ca rotate finish``)."""

    fingerprint: str
    by: str
    at_us: int


def _ca_rotation_to_message(
    command: AddTrustedCa | RetireCa, message: control_pb2.ControlCommand
) -> None:
    if isinstance(command, AddTrustedCa):
        message.add_trusted_ca.CopyFrom(
            control_pb2.AddTrustedCaCommand(
                certificate_pem=command.certificate_pem,
                cross_certificate_pem=command.cross_certificate_pem,
                by=command.by,
                at_us=command.at_us,
            )
        )
    else:
        message.retire_ca.CopyFrom(
            control_pb2.RetireCaCommand(
                fingerprint=command.fingerprint, by=command.by, at_us=command.at_us
            )
        )


# -------------------------------------------------------------- preemption


@dataclass(frozen=True, slots=True)
class PreemptJob:
    """The leader stops ``job_id``'s current run for ``by_job`` (a higher tier); the
    run's end requeues the job with its attempt unspent."""

    job_id: str
    by_job: str
    reason: str
    at_us: int


# -------------------------------------------------------------- lab policy


@dataclass(frozen=True, slots=True)
class SetLabPolicy:
    """An admin applied the lab's scheduling policy (``murmur policy apply``): its
    TOML text (scheduler/lab_policy.py); empty: no policy."""

    text: str
    by: str
    at_us: int


# -------------------------------------------------------------- services


@dataclass(frozen=True, slots=True)
class CreateService:
    """A user creates a service (``spec`` validated by the node that took the
    request); its replicas' jobs are made in the same entry."""

    spec: types_pb2.ServiceSpec
    user: str
    at_us: int


@dataclass(frozen=True, slots=True)
class ScaleService:
    """Its owner (``user``) or an admin sets how many replicas a service keeps."""

    name: str
    replicas: int
    user: str
    is_admin: bool
    at_us: int


@dataclass(frozen=True, slots=True)
class DeleteService:
    """Its owner or an admin deletes a service: every replica is cancelled."""

    name: str
    user: str
    is_admin: bool
    at_us: int


@dataclass(frozen=True, slots=True)
class UpdateService:
    """Its owner or an admin gives a service a new spec (validated by the node that
    took the request): the service's revision goes up by one and nothing else
    changes in this entry. Replicas of the older revision are replaced one by one
    afterwards, by the leader (``RollReplica``), as readiness allows."""

    spec: types_pb2.ServiceSpec
    user: str
    is_admin: bool
    at_us: int


@dataclass(frozen=True, slots=True)
class RollReplica:
    """The leader replaces ``slot``'s replica (``replaced_job``, of an older
    revision) with a new one of ``revision``. Both facts are checked when the entry
    applies: a proposal made on a view that has since changed (another update, a
    scale, a replica already replaced) is refused, so a stale leader cannot roll a
    slot twice."""

    name: str
    slot: int
    revision: int
    replaced_job: str
    at_us: int


# -------------------------------------------------------------- join tokens


@dataclass(frozen=True, slots=True)
class CreateJoinToken:
    """A node created a join token (``murmur token create``); only the SHA-256 of its
    secret is in the log (node/control/queue/join_tokens.py)."""

    token_id: str
    secret_sha256: str
    created_by: str
    created_at_us: int
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class ConsumeJoinToken:
    """A voter's join listener admits ``node_name`` with a token: the first consume of
    a token in log order wins, cluster-wide (node/control/queue/join_tokens.py)."""

    token_id: str
    secret_sha256: str
    node_name: str
    address: str
    at_us: int


def _join_token_to_message(
    command: CreateJoinToken | ConsumeJoinToken, message: control_pb2.ControlCommand
) -> None:
    if isinstance(command, CreateJoinToken):
        message.create_join_token.CopyFrom(
            trust_pb2.CreateJoinTokenCommand(
                token_id=command.token_id,
                secret_sha256=command.secret_sha256,
                created_by=command.created_by,
                created_at_us=command.created_at_us,
                expires_at_us=command.expires_at_us,
            )
        )
    else:
        message.consume_join_token.CopyFrom(
            trust_pb2.ConsumeJoinTokenCommand(
                token_id=command.token_id,
                secret_sha256=command.secret_sha256,
                node_name=command.node_name,
                address=command.address,
                at_us=command.at_us,
            )
        )


def _join_token_from_message(
    message: control_pb2.ControlCommand,
) -> CreateJoinToken | ConsumeJoinToken | None:
    kind = message.WhichOneof("command")
    if kind == "create_join_token":
        create = message.create_join_token
        return CreateJoinToken(
            token_id=create.token_id,
            secret_sha256=create.secret_sha256,
            created_by=create.created_by,
            created_at_us=create.created_at_us,
            expires_at_us=create.expires_at_us,
        )
    if kind == "consume_join_token":
        consume = message.consume_join_token
        return ConsumeJoinToken(
            token_id=consume.token_id,
            secret_sha256=consume.secret_sha256,
            node_name=consume.node_name,
            address=consume.address,
            at_us=consume.at_us,
        )
    return None


# -------------------------------------------------------------- API keys

MAX_USAGE_DELTAS = 2000
"""Keys per RecordApiKeyUsage command: bounds the entry (about 40 bytes a key); a
router with more keys used since its last flush sends the rest at the next one."""


@dataclass(frozen=True, slots=True)
class CreateApiKey:
    """A user created an API key for the model router (node/control/queue/api_keys.py).
    Only the SHA-256 of its secret is here: the key itself is never in the log."""

    id: str
    name: str
    owner: str
    secret_sha256: str
    models: tuple[str, ...]
    rpm: int
    expires_at_us: int
    at_us: int


@dataclass(frozen=True, slots=True)
class RevokeApiKey:
    """Its owner (``by``) or an admin revoked an API key: routers refuse it from then on."""

    id: str
    by: str
    is_admin: bool
    at_us: int


@dataclass(frozen=True, slots=True)
class ApiKeyUsageDelta:
    """What one key was used for on one router since that router's last flush."""

    id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class RecordApiKeyUsage:
    """A router's usage since its last flush, per key (node/router/usage_flush.py).
    (``origin``, ``incarnation``, ``seq``) make a flush that was retried after a lost
    answer count once."""

    origin: str
    incarnation: str
    seq: int
    deltas: tuple[ApiKeyUsageDelta, ...]
    at_us: int


def _api_key_to_message(
    command: CreateApiKey | RevokeApiKey | RecordApiKeyUsage, message: control_pb2.ControlCommand
) -> None:
    if isinstance(command, CreateApiKey):
        message.create_api_key.CopyFrom(
            apikeys_pb2.CreateApiKeyCommand(
                id=command.id, name=command.name, owner=command.owner,
                secret_sha256=command.secret_sha256, models=command.models, rpm=command.rpm,
                expires_at_us=command.expires_at_us, at_us=command.at_us,
            )
        )  # fmt: skip
    elif isinstance(command, RevokeApiKey):
        message.revoke_api_key.CopyFrom(
            apikeys_pb2.RevokeApiKeyCommand(
                id=command.id, by=command.by, is_admin=command.is_admin, at_us=command.at_us
            )
        )
    else:
        message.record_api_key_usage.CopyFrom(
            apikeys_pb2.RecordApiKeyUsageCommand(
                origin=command.origin, incarnation=command.incarnation, seq=command.seq,
                at_us=command.at_us,
                deltas=[
                    apikeys_pb2.ApiKeyUsageDelta(
                        id=delta.id, requests=delta.requests,
                        prompt_tokens=delta.prompt_tokens,
                        completion_tokens=delta.completion_tokens,
                    )
                    for delta in command.deltas
                ],
            )
        )  # fmt: skip


def _api_key_from_message(
    message: control_pb2.ControlCommand,
) -> CreateApiKey | RevokeApiKey | RecordApiKeyUsage | None:
    kind = message.WhichOneof("command")
    if kind == "create_api_key":
        create = message.create_api_key
        return CreateApiKey(
            id=create.id, name=create.name, owner=create.owner,
            secret_sha256=create.secret_sha256, models=tuple(create.models), rpm=create.rpm,
            expires_at_us=create.expires_at_us, at_us=create.at_us,
        )  # fmt: skip
    if kind == "revoke_api_key":
        revoke = message.revoke_api_key
        return RevokeApiKey(revoke.id, revoke.by, revoke.is_admin, revoke.at_us)
    if kind == "record_api_key_usage":
        usage = message.record_api_key_usage
        return RecordApiKeyUsage(
            origin=usage.origin,
            incarnation=usage.incarnation,
            seq=usage.seq,
            deltas=tuple(
                ApiKeyUsageDelta(d.id, d.requests, d.prompt_tokens, d.completion_tokens)
                for d in usage.deltas
            ),
            at_us=usage.at_us,
        )
    return None


@dataclass(frozen=True, slots=True)
class SetClusterLevel:
    """Every node that applies the log speaks control protocol ``level``
    (node/control/queue/protocol.py): the leader raises the cluster's level, and
    commands that need it are accepted from this entry on. Never lowers it."""

    level: int
    at_us: int


Command = (
    SubmitJob
    | SubmitJobs
    | CancelJob
    | AssignJob
    | ReportRun
    | NodeLost
    | RevokeAssignment
    | SetNodeDrain
    | ForgetJobs
    | RevokeCertificate
    | RecordAudit
    | CreateJoinToken
    | ConsumeJoinToken
    | AddTrustedCa
    | RetireCa
    | SetLabPolicy
    | CreateService
    | ScaleService
    | DeleteService
    | UpdateService
    | RollReplica
    | PreemptJob
    | CreateApiKey
    | RevokeApiKey
    | RecordApiKeyUsage
    | SetClusterLevel
    | RecordUserCertificate
)


def to_message(command: Command) -> control_pb2.ControlCommand:
    message = control_pb2.ControlCommand()
    match command:
        case SubmitJob():
            message.submit_job.CopyFrom(_submit_to_message(command))
        case SubmitJobs():
            message.submit_jobs.jobs.extend(_submit_to_message(job) for job in command.jobs)
        case CancelJob():
            message.cancel_job.CopyFrom(
                control_pb2.CancelJobCommand(
                    job_id=command.job_id,
                    user=command.user,
                    is_admin=command.is_admin,
                    reason=command.reason,
                    at_us=command.at_us,
                )
            )
        case AssignJob():
            message.assign_job.CopyFrom(
                control_pb2.AssignJobCommand(
                    job_id=command.job_id,
                    node=command.node,
                    run_id=command.run_id,
                    attempt=command.attempt,
                    gpu_indices=command.gpu_indices,
                    at_us=command.at_us,
                    other_ranks=[
                        control_pb2.AssignedRank(node=rank.node, gpu_indices=rank.gpu_indices)
                        for rank in command.other_ranks
                    ],
                    master_port=command.master_port,
                )
            )
        case ReportRun():
            report = control_pb2.ReportRunCommand(
                job_id=command.job_id,
                run_id=command.run_id,
                node=command.node,
                state=states.to_proto(command.state),
                reason=command.reason,
                at_us=command.at_us,
                timed_out=command.timed_out,
            )
            if command.exit_code is not None:
                report.exit_code = command.exit_code
            message.report_run.CopyFrom(report)
        case NodeLost():
            message.node_lost.CopyFrom(
                control_pb2.NodeLostCommand(
                    node=command.node, reason=command.reason, at_us=command.at_us
                )
            )
        case RevokeAssignment():
            message.revoke_assignment.CopyFrom(
                control_pb2.RevokeAssignmentCommand(
                    job_id=command.job_id,
                    run_id=command.run_id,
                    reason=command.reason,
                    at_us=command.at_us,
                )
            )
        case SetNodeDrain():
            message.set_node_drain.CopyFrom(
                control_pb2.SetNodeDrainCommand(
                    node=command.node,
                    draining=command.draining,
                    by=command.by,
                    at_us=command.at_us,
                )
            )
        case ForgetJobs():
            message.forget_jobs.CopyFrom(
                control_pb2.ForgetJobsCommand(
                    job_ids=command.job_ids,
                    retention_us=command.retention_us,
                    at_us=command.at_us,
                )
            )
        case RecordAudit():
            message.record_audit.CopyFrom(_audit_to_message(command))
        case RevokeCertificate():
            message.revoke_certificate.CopyFrom(_revocation_to_message(command))
        case CreateJoinToken() | ConsumeJoinToken():
            _join_token_to_message(command, message)
        case AddTrustedCa() | RetireCa():
            _ca_rotation_to_message(command, message)
        case CreateApiKey() | RevokeApiKey() | RecordApiKeyUsage():
            _api_key_to_message(command, message)
        case PreemptJob():
            message.preempt_job.CopyFrom(
                control_pb2.PreemptJobCommand(
                    job_id=command.job_id,
                    by_job=command.by_job,
                    reason=command.reason,
                    at_us=command.at_us,
                )
            )
        case SetLabPolicy():
            message.set_lab_policy.CopyFrom(
                control_pb2.SetLabPolicyCommand(
                    text=command.text, by=command.by, at_us=command.at_us
                )
            )
        case CreateService():
            message.create_service.CopyFrom(
                control_pb2.CreateServiceCommand(
                    spec=command.spec, user=command.user, at_us=command.at_us
                )
            )
        case ScaleService():
            message.scale_service.CopyFrom(
                control_pb2.ScaleServiceCommand(
                    name=command.name, replicas=command.replicas, user=command.user,
                    is_admin=command.is_admin, at_us=command.at_us,
                )
            )  # fmt: skip
        case DeleteService():
            message.delete_service.CopyFrom(
                control_pb2.DeleteServiceCommand(
                    name=command.name, user=command.user, is_admin=command.is_admin,
                    at_us=command.at_us,
                )
            )  # fmt: skip
        case UpdateService():
            message.update_service.CopyFrom(
                control_pb2.UpdateServiceCommand(
                    spec=command.spec, user=command.user, is_admin=command.is_admin,
                    at_us=command.at_us,
                )
            )  # fmt: skip
        case RollReplica():
            message.roll_replica.CopyFrom(
                control_pb2.RollReplicaCommand(
                    name=command.name, slot=command.slot, revision=command.revision,
                    replaced_job=command.replaced_job, at_us=command.at_us,
                )
            )  # fmt: skip
        case RecordUserCertificate():
            message.record_user_certificate.CopyFrom(user_certificate_to_message(command))
        case SetClusterLevel():
            message.set_cluster_level.CopyFrom(
                control_pb2.SetClusterLevelCommand(level=command.level, at_us=command.at_us)
            )
    level = required_level(message)
    if level > BASE_LEVEL:
        # Read by a later version that adds a meaning to this command: it knows the
        # number even where it does not know the new field (protocol.py).
        message.protocol_level = level
    return message


def encode(command: Command) -> bytes:
    """The command's bytes for the log (deterministic: map fields in key order)."""
    return to_message(command).SerializeToString(deterministic=True)


def from_message(message: control_pb2.ControlCommand) -> Command:
    """The command a message carries.

    Raises:
        CommandDecodeError: no command, or one this version does not know.
    """
    kind = message.WhichOneof("command")
    if kind == "submit_job":
        return _submit_from_message(message.submit_job)
    if kind == "submit_jobs":
        return SubmitJobs(tuple(_submit_from_message(job) for job in message.submit_jobs.jobs))
    if kind == "cancel_job":
        cancel = message.cancel_job
        return CancelJob(cancel.job_id, cancel.user, cancel.is_admin, cancel.reason, cancel.at_us)
    if kind == "assign_job":
        assign = message.assign_job
        return AssignJob(
            job_id=assign.job_id,
            node=assign.node,
            run_id=assign.run_id,
            attempt=assign.attempt,
            gpu_indices=tuple(assign.gpu_indices),
            at_us=assign.at_us,
            other_ranks=tuple(
                RankPlacement(rank.node, tuple(rank.gpu_indices)) for rank in assign.other_ranks
            ),
            master_port=assign.master_port,
        )
    if kind == "report_run":
        report = message.report_run
        try:
            state = states.from_proto(report.state)
        except ValueError as exc:
            raise CommandDecodeError(f"run report with {exc}") from None
        return ReportRun(
            job_id=report.job_id,
            run_id=report.run_id,
            node=report.node,
            state=state,
            exit_code=report.exit_code if report.HasField("exit_code") else None,
            reason=report.reason,
            at_us=report.at_us,
            timed_out=report.timed_out,
        )
    if kind == "node_lost":
        lost = message.node_lost
        return NodeLost(lost.node, lost.reason, lost.at_us)
    if kind == "revoke_assignment":
        revoke = message.revoke_assignment
        return RevokeAssignment(revoke.job_id, revoke.run_id, revoke.reason, revoke.at_us)
    if kind == "set_node_drain":
        drain = message.set_node_drain
        return SetNodeDrain(drain.node, drain.draining, drain.by, drain.at_us)
    if kind == "forget_jobs":
        forget = message.forget_jobs
        return ForgetJobs(tuple(forget.job_ids), forget.retention_us, forget.at_us)
    if kind == "record_audit":
        return _audit_from_message(message.record_audit)
    if kind == "revoke_certificate":
        return _revocation_from_message(message.revoke_certificate)
    join_token = _join_token_from_message(message)
    if join_token is not None:
        return join_token
    api_key = _api_key_from_message(message)
    if api_key is not None:
        return api_key
    if kind == "add_trusted_ca":
        add = message.add_trusted_ca
        return AddTrustedCa(
            bytes(add.certificate_pem), bytes(add.cross_certificate_pem), add.by, add.at_us
        )
    if kind == "retire_ca":
        retire = message.retire_ca
        return RetireCa(retire.fingerprint, retire.by, retire.at_us)
    if kind == "preempt_job":
        preempt = message.preempt_job
        return PreemptJob(preempt.job_id, preempt.by_job, preempt.reason, preempt.at_us)
    if kind == "set_lab_policy":
        policy = message.set_lab_policy
        return SetLabPolicy(policy.text, policy.by, policy.at_us)
    if kind == "create_service":
        create = message.create_service
        return CreateService(create.spec, create.user, create.at_us)
    if kind == "scale_service":
        scale = message.scale_service
        return ScaleService(scale.name, scale.replicas, scale.user, scale.is_admin, scale.at_us)
    if kind == "delete_service":
        delete = message.delete_service
        return DeleteService(delete.name, delete.user, delete.is_admin, delete.at_us)
    if kind == "update_service":
        update = message.update_service
        return UpdateService(update.spec, update.user, update.is_admin, update.at_us)
    if kind == "roll_replica":
        roll = message.roll_replica
        return RollReplica(roll.name, roll.slot, roll.revision, roll.replaced_job, roll.at_us)
    if kind == "record_user_certificate":
        return user_certificate_from_message(message.record_user_certificate)
    if kind == "set_cluster_level":
        raised = message.set_cluster_level
        return SetClusterLevel(raised.level, raised.at_us)
    raise CommandDecodeError("the entry carries no command this version knows")


def parse(data: bytes) -> control_pb2.ControlCommand:
    """A log entry's bytes as a ``ControlCommand``, whatever command it holds (what
    its level is read from: node/control/queue/protocol.py).

    Raises:
        CommandDecodeError: not a ``ControlCommand``.
    """
    message = control_pb2.ControlCommand()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CommandDecodeError(f"not a control command: {exc}") from None
    return message


def decode(data: bytes) -> Command:
    """The command in a log entry's bytes.

    Raises:
        CommandDecodeError: not a ``ControlCommand``, or a kind this version does not know.
    """
    return from_message(parse(data))


def report_of(job_id: str, node: str, run: types_pb2.Run) -> ReportRun:
    """A node's record of its run as the command that tells the log."""
    return ReportRun(
        job_id=job_id,
        run_id=run.id,
        node=node,
        state=states.from_proto(run.state),
        exit_code=run.exit_code if run.HasField("exit_code") else None,
        reason=run.reason,
        at_us=time.time_ns() // 1000,
        timed_out=run.reason.startswith("time limit"),
    )
