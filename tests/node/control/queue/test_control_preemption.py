"""Preemption in the control state: the run stops like a cancelled one, and its end
requeues the job with its attempt unspent; a cancel meanwhile wins."""

from __future__ import annotations

from murmur.node.control.queue import AssignJob, CancelJob, ReportRun, SubmitJob
from murmur.node.control.queue.commands import PreemptJob, RevokeAssignment, decode, encode
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states
from tests.node.control.queue.builders import SECOND, Log, spec


def running(log: Log, job_id: str = "low") -> None:
    log.apply(SubmitJob(job_id, spec(gpus=4), "bob", "", 0))
    assert log.apply(AssignJob(job_id, "n1", "r1", 1, (0, 1, 2, 3), SECOND)).ok
    log.apply(ReportRun(job_id, "r1", "n1", states.RUNNING, None, "", 2 * SECOND))


def test_a_preempted_run_ends_and_the_job_is_requeued_with_its_attempt_unspent() -> None:
    log = Log()
    running(log)
    command = PreemptJob("low", "high", "tier urgent", 3 * SECOND)
    assert decode(encode(command)) == command
    result = log.apply(command)
    assert result.ok
    job = log.state.job("low")
    assert job is not None
    assert job.cancel_requested
    assert job.preempted_by == "high"
    assert job.reason == "preempted by job high: tier urgent; stopping the run"
    again = log.apply(PreemptJob("low", "other", "", 4 * SECOND))
    assert again.error is ErrorKind.STALE
    log.apply(ReportRun("low", "r1", "n1", states.CANCELLED, 143, "stopped", 5 * SECOND))
    job = log.state.job("low")
    assert job is not None
    assert job.state == states.PENDING
    assert job.attempts == 0
    assert not job.cancel_requested
    assert job.preempted_by == ""
    assert job.reason == "requeued: preempted by job high: tier urgent (attempt not spent)"
    assert job.past_runs[-1].state == states.CANCELLED
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.job("low") == job


def test_a_run_that_succeeded_before_the_stop_stays_succeeded() -> None:
    log = Log()
    running(log)
    log.apply(PreemptJob("low", "high", "", 3 * SECOND))
    log.apply(ReportRun("low", "r1", "n1", states.SUCCEEDED, 0, "", 4 * SECOND))
    job = log.state.job("low")
    assert job is not None
    assert job.state == states.SUCCEEDED
    assert not job.cancel_requested


def test_a_cancel_during_a_preemption_ends_the_job_cancelled() -> None:
    log = Log()
    running(log)
    log.apply(PreemptJob("low", "high", "", 3 * SECOND))
    assert log.apply(CancelJob("low", "bob", False, "no longer needed", 4 * SECOND)).ok
    log.apply(ReportRun("low", "r1", "n1", states.CANCELLED, 143, "", 5 * SECOND))
    job = log.state.job("low")
    assert job is not None
    assert job.state == states.CANCELLED
    assert job.reason == "cancelled by bob: no longer needed"


def test_a_preempted_assignment_taken_back_is_pending_again() -> None:
    log = Log()
    log.apply(SubmitJob("low", spec(gpus=1), "bob", "", 0))
    log.apply(AssignJob("low", "n1", "r1", 1, (0,), SECOND))
    log.apply(PreemptJob("low", "high", "", 2 * SECOND))
    assert log.apply(RevokeAssignment("low", "r1", "n1 refused", 3 * SECOND)).ok
    job = log.state.job("low")
    assert job is not None
    assert job.state == states.PENDING
    assert not job.cancel_requested
    assert job.preempted_by == ""


def test_only_an_active_job_is_preempted() -> None:
    log = Log()
    log.apply(SubmitJob("waiting", spec(gpus=1), "bob", "", 0))
    assert log.apply(PreemptJob("waiting", "high", "", SECOND)).error is ErrorKind.STALE
    assert log.apply(PreemptJob("nope", "high", "", SECOND)).error is ErrorKind.NOT_FOUND
