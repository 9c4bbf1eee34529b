"""Job and run records to the wire contract's messages."""

from __future__ import annotations

from collections.abc import Sequence

from murmur.node.agent.convert import timestamp
from murmur.node.jobspec import states
from murmur.storage import JobRecord, RunRecord
from murmur.v1 import types_pb2


def spec_for_launch(spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    """The spec a run starts from: the job's secrets joined to its env (the user's
    env first, then the secrets; validation keeps their names apart). The runtimes
    then set Murmur's own variables (``MURMUR_*``, ``CUDA_VISIBLE_DEVICES``) over
    both, so the executor's ``LaunchSpec.env`` is the whole of what the user asked
    for. Returns ``spec`` itself when it holds no secret."""
    if not spec.secrets:
        return spec
    launched = types_pb2.JobSpec()
    launched.CopyFrom(spec)
    merged = {**launched.env, **launched.secrets}
    launched.env.clear()
    launched.env.update(merged)
    launched.ClearField("secrets")
    return launched


def run_message(run: RunRecord) -> types_pb2.Run:
    message = types_pb2.Run(
        id=run.id,
        job_id=run.job_id,
        attempt=run.attempt,
        node=run.node,
        state=states.to_proto(run.state),
        gpu_indices=list(run.gpu_indices),
        term=run.term,
        sequence=run.sequence,
        container_id=run.container_id,
        pid=run.pid or 0,
        reason=run.reason,
        created_at=timestamp(run.created_at),
    )
    if run.exit_code is not None:
        message.exit_code = run.exit_code
    if run.started_at is not None:
        message.started_at.CopyFrom(timestamp(run.started_at))
    if run.finished_at is not None:
        message.finished_at.CopyFrom(timestamp(run.finished_at))
    return message


def job_message(
    job: JobRecord, runs: Sequence[RunRecord] = (), *, queue_position: int = 0
) -> types_pb2.Job:
    spec = types_pb2.JobSpec.FromString(job.spec)
    message = types_pb2.Job(
        id=job.id,
        spec=spec,
        user=job.user,
        state=states.to_proto(job.state),
        reason=job.reason,
        queue_position=queue_position if job.state == states.PENDING else 0,
        submitted_at=timestamp(job.submitted_at),
        updated_at=timestamp(job.updated_at),
        runs=[run_message(run) for run in runs],
        attempts=job.attempts,
    )
    if job.exit_code is not None:
        message.exit_code = job.exit_code
    return message
