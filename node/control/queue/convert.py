"""Cluster jobs to the wire contract's ``murmur.v1.Job`` (the client API)."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.node.control.queue.records import Assignment, ClusterJob, EndedRun, JobEvent
from murmur.node.control.queue.services import ServiceRecord, replica_revision
from murmur.node.jobspec import states
from murmur.node.jobspec.secrets import without_secret_values
from murmur.v1 import types_pb2


def timestamp_us(at_us: int) -> Timestamp:
    """A protobuf timestamp of microseconds since the epoch."""
    seconds, micros = divmod(at_us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def _run(job_id: str, assignment: Assignment, state: str) -> types_pb2.Run:
    message = types_pb2.Run(
        id=assignment.run_id,
        job_id=job_id,
        attempt=assignment.attempt,
        node=assignment.node,
        state=states.to_proto(state),
        gpu_indices=assignment.gpu_indices,
        term=assignment.term,
        sequence=assignment.sequence,
        created_at=timestamp_us(assignment.assigned_at_us),
        node_rank=assignment.rank,
    )
    if assignment.started_at_us:
        message.started_at.CopyFrom(timestamp_us(assignment.started_at_us))
    if assignment.ended_at_us:
        message.finished_at.CopyFrom(timestamp_us(assignment.ended_at_us))
    return message


def ended_run_messages(job_id: str, run: EndedRun) -> list[types_pb2.Run]:
    """An ended run: one message per rank (one for a single-node job), each with the
    run's end."""
    messages = []
    for rank in run.ranks:
        message = _run(job_id, rank, run.state)
        message.reason = run.reason
        message.finished_at.CopyFrom(timestamp_us(rank.ended_at_us or run.ended_at_us))
        if run.exit_code is not None:
            message.exit_code = run.exit_code
        messages.append(message)
    return messages


def job_message(
    job: ClusterJob, *, queue_position: int = 0, waiting_reason: str = ""
) -> types_pb2.Job:
    """The client API's view of ``job``: its ended runs, then its active one (a
    message per rank of a gang's run).

    Args:
        queue_position: 1-based among the pending jobs of its queue (from the leader's
            last plan); shown only while the job is pending.
        waiting_reason: why the last plan left it waiting; replaces ``job.reason``
            while it is pending and not backed off (a backed-off job keeps its
            "retrying in ..." reason).
    """
    pending = job.state == states.PENDING
    reason = job.reason
    if pending and waiting_reason and not job.not_before_us:
        reason = waiting_reason
    message = types_pb2.Job(
        id=job.id,
        spec=without_secret_values(job.spec),  # no answer carries a secret's value
        user=job.user,
        state=states.to_proto(job.state),
        reason=reason,
        queue_position=queue_position if pending else 0,
        submitted_at=timestamp_us(job.submitted_at_us),
        updated_at=timestamp_us(job.updated_at_us),
        runs=[message for run in job.past_runs for message in ended_run_messages(job.id, run)],
        attempts=job.attempts,
    )
    for rank in job.runs:
        active = _run(job.id, rank, rank.ended or job.state)
        active.reason = job.reason
        message.runs.append(active)
    if job.exit_code is not None:
        message.exit_code = job.exit_code
    message.history.extend(history_event(job.id, event) for event in job.history)
    return message


def service_message(
    record: ServiceRecord, job_of: Callable[[str], ClusterJob | None]
) -> types_pb2.Service:
    """The client API's view of a service, its replicas as the log holds them (their
    port and readiness are gossip's: the answering node adds them)."""
    message = types_pb2.Service(
        spec=record.spec,
        user=record.user,
        created_at=timestamp_us(record.created_at_us),
        revision=record.revision,
    )
    for slot, job_id in enumerate(record.replica_jobs):
        replica = message.replicas.add(slot=slot, job_id=job_id)
        job = job_of(job_id)
        if job is None:
            continue
        replica.state = states.to_proto(job.state)
        replica.reason = job.reason
        replica.revision = replica_revision(job.spec)
        if job.assignment is not None:
            replica.node = job.assignment.node
    return message


def history_event(job_id: str, event: JobEvent) -> types_pb2.Event:
    """One line of a job's story as an Event (its id is its time in microseconds:
    unique within a job, and ordered)."""
    return types_pb2.Event(
        id=event.at_us,
        time=timestamp_us(event.at_us),
        kind="job.state",
        subject=job_id,
        message=event.reason,
        job_state=states.to_proto(event.state),
    )
