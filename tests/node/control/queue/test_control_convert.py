"""Cluster jobs as the client API shows them."""

from __future__ import annotations

from murmur.node.control.queue import AssignJob, ReportRun, SubmitJob, job_message
from murmur.node.jobspec import states
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def test_a_job_message_shows_its_runs_with_their_fencing_tokens() -> None:
    log = Log(term=7)
    log.apply(SubmitJob("j1", spec(gpus=1, retries=1), "alice", "", 10 * SECOND + 5))
    log.apply(AssignJob("j1", "n1", "r1", 1, (2,), 20 * SECOND))
    log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "", 21 * SECOND))
    log.apply(ReportRun("j1", "r1", "n1", states.FAILED, 3, "", 30 * SECOND))
    log.apply(AssignJob("j1", "n2", "r2", 2, (0,), 40 * SECOND))
    job = log.state.job("j1")
    assert job is not None
    message = job_message(job)
    assert message.id == "j1"
    assert message.user == "alice"
    assert message.state == types_pb2.JOB_STATE_SCHEDULED
    assert message.attempts == 2
    assert message.exit_code == 3
    assert message.submitted_at.seconds == 10
    assert message.submitted_at.nanos == 5000
    assert message.spec.gpus.count == 1
    ended, active = message.runs
    assert (ended.id, ended.node, ended.state, ended.exit_code) == (
        "r1", "n1", types_pb2.JOB_STATE_FAILED, 3,
    )  # fmt: skip
    assert (ended.term, ended.sequence, list(ended.gpu_indices)) == (7, 2, [2])
    assert ended.started_at.seconds == 21
    assert ended.finished_at.seconds == 30
    assert (active.id, active.node, active.state, active.sequence) == (
        "r2", "n2", types_pb2.JOB_STATE_SCHEDULED, 5,
    )  # fmt: skip
    assert not active.HasField("exit_code")
    assert not active.HasField("finished_at")


def test_a_pending_job_shows_its_waiting_reason_and_position() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(gpus=4), "alice", "", 0))
    job = log.state.job("j1")
    assert job is not None
    message = job_message(job, queue_position=3, waiting_reason="waiting: no node has 4 free GPUs")
    assert message.reason == "waiting: no node has 4 free GPUs"
    assert message.queue_position == 3
    assert not message.HasField("exit_code")
    assert list(message.runs) == []
