"""Job and drain records to and from ``murmur.v1.ControlJob`` and
``murmur.v1.ControlNodeDrain``, the snapshot's encoding (a job's also the archive's).

The one place that maps them: a field added to ``ClusterJob`` is added here and in
``proto/murmur/v1/control.proto``.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from murmur.node.control.consensus.errors import UpgradeRequiredError
from murmur.node.control.queue.records import (
    Assignment,
    ClusterJob,
    DrainRecord,
    EndedRun,
    GangStop,
    JobEvent,
)
from murmur.node.control.queue.services import ServiceRecord
from murmur.node.jobspec import states
from murmur.v1 import control_pb2, types_pb2


class ControlSnapshotError(ValueError):
    """Bytes that are not a control snapshot this version can restore."""


class SnapshotTooNewError(ControlSnapshotError, UpgradeRequiredError):
    """A snapshot a newer version wrote (a format or a protocol level this one does not
    know): the node stops applying the log rather than guess (fail-stop)."""


def _state_of(value: int, where: str) -> str:
    try:
        return states.from_proto(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ControlSnapshotError(f"{where}: {exc}") from None


def assignment_to_message(assignment: Assignment) -> control_pb2.ControlAssignment:
    return control_pb2.ControlAssignment(
        node=assignment.node,
        run_id=assignment.run_id,
        attempt=assignment.attempt,
        gpu_indices=assignment.gpu_indices,
        term=assignment.term,
        sequence=assignment.sequence,
        assigned_at_us=assignment.assigned_at_us,
        started_at_us=assignment.started_at_us,
        rank=assignment.rank,
        ended=(
            states.to_proto(assignment.ended)
            if assignment.ended
            else types_pb2.JOB_STATE_UNSPECIFIED
        ),
        ended_at_us=assignment.ended_at_us,
        master_port=assignment.master_port,
    )


def assignment_from_message(message: control_pb2.ControlAssignment, where: str) -> Assignment:
    return Assignment(
        node=message.node,
        run_id=message.run_id,
        attempt=message.attempt,
        gpu_indices=tuple(message.gpu_indices),
        term=message.term,
        sequence=message.sequence,
        assigned_at_us=message.assigned_at_us,
        started_at_us=message.started_at_us,
        rank=message.rank,
        ended=_state_of(message.ended, where) if message.ended else "",
        ended_at_us=message.ended_at_us,
        master_port=message.master_port,
    )


def _ranks_to_message(
    ranks: tuple[Assignment, ...],
    first: control_pb2.ControlAssignment,
    others: RepeatedCompositeFieldContainer[control_pb2.ControlAssignment],
) -> None:
    first.CopyFrom(assignment_to_message(ranks[0]))
    others.extend(assignment_to_message(rank) for rank in ranks[1:])


def _ranks_from_message(
    first: control_pb2.ControlAssignment,
    others: Iterable[control_pb2.ControlAssignment],
    where: str,
) -> tuple[Assignment, ...]:
    return (
        assignment_from_message(first, where),
        *(assignment_from_message(rank, where) for rank in others),
    )


def job_to_message(job: ClusterJob) -> control_pb2.ControlJob:
    message = control_pb2.ControlJob(
        id=job.id,
        spec=job.spec,
        user=job.user,
        queue=job.queue,
        priority=job.priority,
        submit_order=job.submit_order,
        submitted_at_us=job.submitted_at_us,
        updated_at_us=job.updated_at_us,
        state=states.to_proto(job.state),
        reason=job.reason,
        attempts=job.attempts,
        not_before_us=job.not_before_us,
        cancel_requested=job.cancel_requested,
        cancel_reason=job.cancel_reason,
        preempted_by=job.preempted_by,
        idempotency_key=job.idempotency_key,
    )
    if job.exit_code is not None:
        message.exit_code = job.exit_code
    if job.runs:
        _ranks_to_message(job.runs, message.assignment, message.other_ranks)
    stop = job.gang_stop
    if stop is not None:
        message.gang_stop.CopyFrom(
            control_pb2.ControlGangStop(
                state=states.to_proto(stop.state), exit_code=stop.exit_code,
                reason=stop.reason, retryable=stop.retryable, with_node=stop.with_node,
            )
        )  # fmt: skip
    for run in job.past_runs:
        ended = message.past_runs.add(
            state=states.to_proto(run.state), reason=run.reason, ended_at_us=run.ended_at_us
        )
        _ranks_to_message(run.ranks, ended.assignment, ended.other_ranks)
        if run.exit_code is not None:
            ended.exit_code = run.exit_code
    for event in job.history:
        message.history.add(
            at_us=event.at_us, state=states.to_proto(event.state), reason=event.reason
        )
    return message


def job_from_message(message: control_pb2.ControlJob) -> ClusterJob:
    """The record a snapshot holds.

    Raises:
        ControlSnapshotError: a state this version does not know.
    """
    where = f"job {message.id}"
    return ClusterJob(
        id=message.id,
        spec=message.spec,
        user=message.user,
        queue=message.queue,
        priority=message.priority,
        submit_order=message.submit_order,
        submitted_at_us=message.submitted_at_us,
        updated_at_us=message.updated_at_us,
        state=_state_of(message.state, where),
        reason=message.reason,
        attempts=message.attempts,
        exit_code=message.exit_code if message.HasField("exit_code") else None,
        not_before_us=message.not_before_us,
        cancel_requested=message.cancel_requested,
        cancel_reason=message.cancel_reason,
        preempted_by=message.preempted_by,
        idempotency_key=message.idempotency_key,
        runs=(
            _ranks_from_message(message.assignment, message.other_ranks, where)
            if message.HasField("assignment")
            else ()
        ),
        gang_stop=_gang_stop_of(message, where),
        past_runs=tuple(
            EndedRun(
                ranks=_ranks_from_message(run.assignment, run.other_ranks, where),
                state=_state_of(run.state, where),
                exit_code=run.exit_code if run.HasField("exit_code") else None,
                reason=run.reason,
                ended_at_us=run.ended_at_us,
            )
            for run in message.past_runs
        ),
        history=tuple(
            JobEvent(event.at_us, _state_of(event.state, where), event.reason)
            for event in message.history
        ),
    )


def _gang_stop_of(message: control_pb2.ControlJob, where: str) -> GangStop | None:
    if not message.HasField("gang_stop"):
        return None
    stop = message.gang_stop
    return GangStop(
        state=_state_of(stop.state, where),
        exit_code=stop.exit_code if stop.HasField("exit_code") else None,
        reason=stop.reason,
        retryable=stop.retryable,
        with_node=stop.with_node,
    )


def service_to_message(record: ServiceRecord) -> control_pb2.ControlService:
    return control_pb2.ControlService(
        spec=record.spec,
        user=record.user,
        created_at_us=record.created_at_us,
        created_index=record.created_index,
        replica_jobs=record.replica_jobs,
        revision=record.revision,
    )


def service_from_message(message: control_pb2.ControlService) -> ServiceRecord:
    return ServiceRecord(
        spec=message.spec,
        user=message.user,
        created_at_us=message.created_at_us,
        created_index=message.created_index,
        replica_jobs=tuple(message.replica_jobs),
        revision=message.revision or 1,
    )


def drain_to_message(drain: DrainRecord) -> control_pb2.ControlNodeDrain:
    return control_pb2.ControlNodeDrain(
        node=drain.node, draining=drain.draining, by=drain.by, at_us=drain.at_us
    )


def drain_from_message(message: control_pb2.ControlNodeDrain) -> DrainRecord:
    return DrainRecord(
        node=message.node, draining=message.draining, by=message.by, at_us=message.at_us
    )


def job_to_bytes(job: ClusterJob) -> bytes:
    """One job's ``ControlJob`` bytes (the archive keeps a forgotten job so)."""
    return job_to_message(job).SerializeToString(deterministic=True)


def job_from_bytes(data: bytes) -> ClusterJob:
    """The job ``job_to_bytes`` encoded.

    Raises:
        ControlSnapshotError: not a ``ControlJob`` this version can read.
    """
    message = control_pb2.ControlJob()
    try:
        message.ParseFromString(data)
    except Exception as exc:
        raise ControlSnapshotError(f"not a control job: {exc}") from None
    return job_from_message(message)
