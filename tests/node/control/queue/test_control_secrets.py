"""A job's secrets in the control state: kept while it may run, for the run's node;
never in its client view; dropped, names kept, once it has ended."""

from __future__ import annotations

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ControlState,
    ReportRun,
    SubmitJob,
    job_message,
)
from murmur.node.jobspec import states
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec

SECRET = "sk-live-123"


def secret_spec() -> types_pb2.JobSpec:
    with_secret = spec()
    with_secret.secrets["API_KEY"] = SECRET
    return with_secret


def test_a_live_job_keeps_its_secrets_but_its_message_shows_names_only() -> None:
    log = Log()
    log.apply(SubmitJob("j1", secret_spec(), "alice", "", SECOND))
    log.apply(AssignJob("j1", "n1", "r1", 1, (), 2 * SECOND))
    job = log.state.job("j1")
    assert job is not None
    assert dict(job.spec.secrets) == {"API_KEY": SECRET}  # what the leader sends the node
    message = job_message(job)
    assert not message.spec.secrets
    assert list(message.spec.secret_names) == ["API_KEY"]
    assert SECRET.encode() not in message.SerializeToString()


def test_an_ended_job_drops_its_secret_values_from_state_and_snapshot() -> None:
    log = Log()
    log.apply(SubmitJob("run", secret_spec(), "alice", "", SECOND))
    log.apply(SubmitJob("cancel", secret_spec(), "alice", "", SECOND))
    log.apply(AssignJob("run", "n1", "r1", 1, (), 2 * SECOND))
    log.apply(ReportRun("run", "r1", "n1", states.SUCCEEDED, 0, "", 3 * SECOND))
    log.apply(CancelJob("cancel", "alice", False, "", 3 * SECOND))
    for job_id in ("run", "cancel"):
        job = log.state.job(job_id)
        assert job is not None
        assert job.is_terminal
        assert not job.spec.secrets
        assert list(job.spec.secret_names) == ["API_KEY"]
    snapshot = log.state.snapshot()
    assert SECRET.encode() not in snapshot
    restored = ControlState()
    restored.restore(snapshot)
    shown = restored.job("run")
    assert shown is not None
    assert list(job_message(shown).spec.secret_names) == ["API_KEY"]
