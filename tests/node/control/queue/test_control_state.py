"""The rules of each control command, one at a time."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node import errors
from murmur.node.control.queue import (
    ApplyResult,
    AssignJob,
    CancelJob,
    ClusterJob,
    ControlSnapshotError,
    ControlState,
    ErrorKind,
    NodeLost,
    ReportRun,
    RevokeAssignment,
    SubmitJob,
    encode,
    retry_backoff_us,
)
from murmur.node.jobspec import states
from tests.node.control.queue.builders import SECOND, Log, spec


def submit(
    log: Log, job_id: str = "j1", *, user: str = "alice", key: str = "", **kw: object
) -> ClusterJob:
    result = log.apply(SubmitJob(job_id, spec(**kw), user, key, 10 * SECOND))  # type: ignore[arg-type]
    assert result.ok, result
    assert result.job is not None
    return result.job


def assign(
    log: Log, job_id: str = "j1", *, node: str = "n1", run: str = "r1", attempt: int = 1,
    gpus: tuple[int, ...] = (), at: int = 20 * SECOND,
) -> ClusterJob:  # fmt: skip
    result = log.apply(AssignJob(job_id, node, run, attempt, gpus, at))
    assert result.ok, result
    assert result.job is not None
    return result.job


def report(
    log: Log, state: str, *, job_id: str = "j1", run: str = "r1", node: str = "n1",
    exit_code: int | None = None, reason: str = "", at: int = 30 * SECOND, timed_out: bool = False,
) -> ApplyResult:  # fmt: skip
    return log.apply(ReportRun(job_id, run, node, state, exit_code, reason, at, timed_out))


# ------------------------------------------------------------------ submit


def test_submit_makes_a_pending_job_ordered_by_its_log_index() -> None:
    log = Log()
    first = submit(log, "a")
    second = submit(log, "b", queue="gpu", priority=5)
    assert (first.state, first.reason, first.submit_order) == (states.PENDING, "queued", 1)
    assert (second.queue, second.priority, second.submit_order) == ("gpu", 5, 2)
    assert first.history[0].reason == "submitted by alice"
    assert [job.id for job in log.state.jobs()] == ["a", "b"]
    assert log.state.counts_by_state()[states.PENDING] == 2


def test_a_retried_submission_yields_the_first_job() -> None:
    log = Log()
    first = submit(log, "a", key="k")
    again = log.apply(SubmitJob("b", spec(), "alice", "k", 11 * SECOND))
    assert again.ok
    assert again.job == first
    assert again.changed == ()
    assert log.state.job("b") is None
    assert len(log.state) == 1
    assert log.state.by_idempotency("alice", "k") == first
    # Another user's key, and an empty key, never match.
    assert submit(log, "c", user="bob", key="k").id == "c"
    assert submit(log, "d").id == "d"
    assert submit(log, "e").id == "e"
    assert log.state.by_idempotency("alice", "") is None


def test_a_taken_job_id_or_missing_fields_are_refused() -> None:
    log = Log()
    submit(log, "a")
    taken = log.apply(SubmitJob("a", spec(), "bob", "", 0))
    assert taken.error is ErrorKind.INVALID
    assert log.apply(SubmitJob("", spec(), "bob", "", 0)).error is ErrorKind.INVALID
    assert log.apply(SubmitJob("x", spec(cpus=-1), "bob", "", 0)).error is ErrorKind.INVALID
    assert len(log.state) == 1


# ------------------------------------------------------------------ cancel


def test_cancel_of_a_pending_job_ends_it_at_once() -> None:
    log = Log()
    submit(log)
    result = log.apply(CancelJob("j1", "alice", False, "wrong data", 15 * SECOND))
    assert result.ok
    assert result.job is not None
    assert result.job.state == states.CANCELLED
    assert result.job.reason == "cancelled by alice: wrong data"
    assert result.job.updated_at_us == 15 * SECOND
    assert log.state.pending_due(100 * SECOND) == []


def test_cancel_by_someone_else_is_refused_unless_admin() -> None:
    log = Log()
    submit(log)
    refused = log.apply(CancelJob("j1", "bob", False, "", 15 * SECOND))
    assert (refused.ok, refused.error) == (False, ErrorKind.PERMISSION_DENIED)
    assert isinstance(refused.exception(), errors.PermissionDeniedError)
    assert log.state.job("j1").state == states.PENDING  # type: ignore[union-attr]
    admin = log.apply(CancelJob("j1", "root", True, "", 15 * SECOND))
    assert admin.ok
    assert admin.job is not None
    assert admin.job.reason == "cancelled by root"


def test_cancel_of_an_ended_or_unknown_job_is_refused() -> None:
    log = Log()
    submit(log)
    log.apply(CancelJob("j1", "alice", False, "", 15 * SECOND))
    again = log.apply(CancelJob("j1", "alice", False, "", 16 * SECOND))
    assert again.error is ErrorKind.FAILED_PRECONDITION
    assert isinstance(again.exception(), errors.FailedPreconditionError)
    missing = log.apply(CancelJob("nope", "alice", False, "", 16 * SECOND))
    assert missing.error is ErrorKind.NOT_FOUND
    assert isinstance(missing.exception(), errors.NotFoundError)


def test_cancel_of_a_running_job_asks_its_node_and_ends_on_the_report() -> None:
    log = Log()
    submit(log, retries=3)
    assign(log)
    report(log, states.RUNNING)
    asked = log.apply(CancelJob("j1", "alice", False, "oops", 40 * SECOND))
    assert asked.job is not None
    assert (asked.job.state, asked.job.cancel_requested) == (states.RUNNING, True)
    assert asked.job.reason == "cancelled by alice: oops; stopping the run"
    assert log.apply(CancelJob("j1", "alice", False, "", 41 * SECOND)).changed == ()
    # The run ends failed (killed): with retries left it is still cancelled, not retried.
    ended = report(log, states.FAILED, exit_code=137, at=50 * SECOND)
    assert ended.job is not None
    assert ended.job.state == states.CANCELLED
    assert ended.job.reason == "cancelled by alice: oops"
    assert ended.job.past_runs[-1].state == states.CANCELLED
    assert log.state.active_on("n1") == []


# ------------------------------------------------------------------ assign


def test_assignment_is_stamped_with_the_entrys_term_and_index() -> None:
    log = Log(term=3)
    submit(log, gpus=2)
    log.term = 4
    job = assign(log, gpus=(0, 1))
    assert job.state == states.SCHEDULED
    assert job.attempts == 1
    assert job.assignment is not None
    assert (job.assignment.term, job.assignment.sequence) == (4, 2)
    assert job.assignment.gpu_indices == (0, 1)
    assert job.reason == "assigned to n1 (GPUs 0,1)"
    assert log.state.active_on("n1") == [job]
    assert log.state.nodes_with_runs() == ["n1"]


def test_assignment_racing_a_cancel_is_a_no_op() -> None:
    log = Log()
    submit(log)
    log.apply(CancelJob("j1", "alice", False, "", 15 * SECOND))
    before = log.state.snapshot()
    raced = log.apply(AssignJob("j1", "n1", "r1", 1, (), 20 * SECOND))
    assert (raced.ok, raced.error) == (False, ErrorKind.STALE)
    assert raced.job is not None
    assert raced.job.state == states.CANCELLED
    assert log.state.active_on("n1") == []
    assert log.state.snapshot() != before  # only the applied index moved
    assert ControlState.from_snapshot(before).jobs() == log.state.jobs()


def test_a_job_is_assigned_once_per_attempt() -> None:
    log = Log()
    submit(log)
    assign(log)
    twice = log.apply(AssignJob("j1", "n2", "r2", 1, (), 21 * SECOND))
    assert twice.error is ErrorKind.STALE
    wrong_attempt = Log()
    submit(wrong_attempt)
    result = wrong_attempt.apply(AssignJob("j1", "n1", "r1", 2, (), 20 * SECOND))
    assert result.error is ErrorKind.STALE


def test_assignment_refuses_gpus_another_job_holds() -> None:
    log = Log()
    submit(log, "a", gpus=2)
    submit(log, "b", gpus=1)
    submit(log, "s1", gpus=1, share=True)
    submit(log, "s2", gpus=1, share=True)
    assign(log, "a", run="ra", gpus=(0, 1))
    clash = log.apply(AssignJob("b", "n1", "rb", 1, (1,), 20 * SECOND))
    assert clash.error is ErrorKind.STALE
    assert "GPU 1 of n1 is held by job a" in clash.message
    assign(log, "b", node="n2", run="rb", gpus=(1,))  # same index, other node: fine
    assign(log, "s1", run="rs1", gpus=(2,))
    assign(log, "s2", run="rs2", gpus=(2,))  # sharers join sharers
    wrong_count = log.apply(AssignJob("x", "n1", "r", 1, (3,), 20 * SECOND))
    assert wrong_count.error is ErrorKind.NOT_FOUND
    submit(log, "c", gpus=1)
    assert log.apply(AssignJob("c", "n1", "rc", 1, (3, 4), 20 * SECOND)).error is ErrorKind.INVALID
    assert log.apply(AssignJob("c", "n1", "rc", 1, (2,), 20 * SECOND)).error is ErrorKind.STALE
    assert log.apply(AssignJob("c", "n3", "ra", 1, (0,), 20 * SECOND)).error is ErrorKind.INVALID


# ------------------------------------------------------------------ report


def test_reports_move_the_job_through_starting_and_running_to_its_end() -> None:
    log = Log()
    submit(log)
    assign(log)
    starting = report(log, states.STARTING, at=21 * SECOND)
    assert starting.job is not None
    assert starting.job.state == states.STARTING
    running = report(log, states.RUNNING, at=22 * SECOND)
    assert running.job is not None
    assert running.job.state == states.RUNNING
    assert running.job.assignment is not None
    assert running.job.assignment.started_at_us == 22 * SECOND
    late_starting = report(log, states.STARTING, at=23 * SECOND)
    assert late_starting.ok
    assert late_starting.changed == ()
    done = report(log, states.SUCCEEDED, exit_code=0, at=40 * SECOND)
    assert done.job is not None
    assert (done.job.state, done.job.exit_code, done.job.reason) == (
        states.SUCCEEDED, 0, "exited with code 0",
    )  # fmt: skip
    assert done.job.assignment is None
    assert done.job.past_runs[0].assignment.run_id == "r1"
    assert [event.state for event in done.job.history] == [
        states.PENDING, states.SCHEDULED, states.STARTING, states.RUNNING, states.SUCCEEDED,
    ]  # fmt: skip
    assert log.state.active_on("n1") == []


def test_a_stale_report_is_ignored() -> None:
    log = Log()
    submit(log, retries=1)
    assign(log)
    before = log.state.job("j1")
    for stale in (
        report(log, states.FAILED, run="r0"),
        report(log, states.FAILED, node="n2"),
    ):
        assert (stale.ok, stale.error) == (False, ErrorKind.STALE)
    assert log.state.job("j1") == before
    report(log, states.FAILED, exit_code=1, at=30 * SECOND)  # back to pending
    repeated = report(log, states.FAILED, exit_code=1, at=31 * SECOND)
    assert repeated.error is ErrorKind.STALE
    assert log.state.job("j1").state == states.PENDING  # type: ignore[union-attr]
    assert report(log, states.RUNNING, job_id="zz").error is ErrorKind.NOT_FOUND
    assert report(log, states.PENDING).error is ErrorKind.INVALID


def test_a_failure_with_retries_left_goes_back_to_pending_after_a_backoff() -> None:
    log = Log(ControlState(retry_backoff_base_us=2 * SECOND))
    submit(log, retries=2)
    assign(log)
    first = report(log, states.FAILED, exit_code=3, at=30 * SECOND)
    assert first.job is not None
    job = first.job
    assert (job.state, job.not_before_us, job.exit_code, job.attempts) == (
        states.PENDING, 32 * SECOND, 3, 1,
    )  # fmt: skip
    assert job.reason == "retrying in 2s after: exited with code 3 (attempt 2 of 3 next)"
    assert log.state.pending_due(31 * SECOND) == []
    assert log.state.next_due_us() == 32 * SECOND
    assert log.state.becomes_due(31 * SECOND, 32 * SECOND)
    assert not log.state.becomes_due(30 * SECOND, 31 * SECOND)
    assert not log.state.becomes_due(32 * SECOND, 60 * SECOND)  # due already at the start
    early = log.apply(AssignJob("j1", "n1", "r2", 2, (), 31 * SECOND))
    assert early.error is ErrorKind.STALE
    assert [j.id for j in log.state.pending_due(32 * SECOND)] == ["j1"]
    assign(log, run="r2", attempt=2, at=32 * SECOND)
    second = report(log, states.LOST, run="r2", reason="lost: container vanished", at=40 * SECOND)
    assert second.job is not None
    assert (second.job.state, second.job.not_before_us) == (states.PENDING, 44 * SECOND)
    assign(log, run="r3", attempt=3, at=44 * SECOND)
    last = report(log, states.FAILED, run="r3", exit_code=1, at=50 * SECOND)
    assert last.job is not None
    assert (last.job.state, last.job.attempts) == (states.FAILED, 3)
    assert [run.run_id for run in (r.assignment for r in last.job.past_runs)] == ["r1", "r2", "r3"]


def test_a_run_stopped_at_its_time_limit_is_not_retried() -> None:
    log = Log()
    submit(log, retries=5)
    assign(log)
    ended = report(log, states.FAILED, reason="time limit 1:00:00 exceeded", timed_out=True)
    assert ended.job is not None
    assert ended.job.state == states.FAILED


def test_retry_backoff_doubles_up_to_five_minutes() -> None:
    assert [retry_backoff_us(n, SECOND) for n in (0, 1, 2, 3)] == [
        SECOND, SECOND, 2 * SECOND, 4 * SECOND,
    ]  # fmt: skip
    assert retry_backoff_us(20, SECOND) == 300 * SECOND
    assert retry_backoff_us(10_000, SECOND) == 300 * SECOND


# ---------------------------------------------------------------- node lost


def test_node_lost_requeues_its_runs_at_once_without_spending_an_attempt() -> None:
    log = Log()
    submit(log, "a", retries=1, gpus=1)
    submit(log, "b", gpus=1)
    submit(log, "c")
    assign(log, "a", run="ra", gpus=(0,))
    assign(log, "b", run="rb", gpus=(1,))
    assign(log, "c", node="n2", run="rc")
    result = log.apply(NodeLost("n1", "stopped answering", 60 * SECOND))
    assert result.ok
    assert [job.id for job in result.changed] == ["a", "b"]
    for job, run in zip(result.changed, ("ra", "rb"), strict=True):
        assert (job.state, job.attempts, job.not_before_us) == (states.PENDING, 0, 0)
        assert job.reason == "requeued: lost with node n1 (attempt not spent)"
        (ended,) = job.past_runs
        assert (ended.state, ended.assignment.run_id) == (states.LOST, run)
        assert ended.reason == "lost with node n1: stopped answering"
        assert job.history[-1].state == states.PENDING
        assert job.history[-1].reason == (
            f"run {run}: lost with node n1: stopped answering; requeued (attempt not spent)"
        )
    assert log.state.active_on("n1") == []
    assert [job.id for job in log.state.active_on("n2")] == ["c"]
    assert [job.id for job in log.state.pending_due(60 * SECOND)] == ["a", "b"]
    assert log.apply(NodeLost("n9", "", 70 * SECOND)).changed == ()
    # Placed again at once, at the attempt the lost run had, on the GPUs it freed.
    assign(log, "a", node="n2", run="ra2", attempt=1, gpus=(0,), at=61 * SECOND)
    assign(log, "b", run="rb2", attempt=1, gpus=(0,), at=61 * SECOND)
    # The retries are all the job's own failures still have.
    a = report(log, states.FAILED, job_id="a", run="ra2", node="n2", exit_code=1).job
    b = report(log, states.FAILED, job_id="b", run="rb2", exit_code=1).job
    assert a is not None
    assert b is not None
    assert a.state == states.PENDING
    assert a.reason.endswith("(attempt 2 of 2 next)")
    assert (b.state, b.attempts) == (states.FAILED, 1)
    assert [run.state for run in b.past_runs] == [states.LOST, states.FAILED]


def test_with_no_requeue_a_node_loss_spends_a_retry_as_a_failure_does() -> None:
    log = Log()
    submit(log, "a", retries=1, no_requeue=True)
    submit(log, "b", no_requeue=True)
    assign(log, "a", run="ra")
    assign(log, "b", run="rb")
    a, b = log.apply(NodeLost("n1", "stopped answering", 60 * SECOND)).changed
    assert (a.state, a.attempts, a.not_before_us) == (states.PENDING, 1, 65 * SECOND)
    assert a.reason == (
        "retrying in 5s after: lost with node n1: stopped answering (attempt 2 of 2 next)"
    )
    assert (b.state, b.reason) == (states.LOST, "lost with node n1: stopped answering")


@pytest.mark.parametrize(
    ("reason", "requeued"),
    [
        ("lost: no word from a leader for 30 s (lease expired)", True),
        (
            "lost: no word from a leader for 30 s (lease expired); stopped by the run's supervisor",
            True,
        ),
        ("lost: the node restarted and the run was not found", True),
        ("lost: container removed outside murmur", False),
        ("lost: runtime error: boom", False),
        ("lost: n1 never started it within 600 s", False),  # the leader's: see reconcile.py
        ("could not start on n1: GPU 0 is held by run x", False),  # dispatch.py
        ("", False),
    ],
)
def test_a_run_its_node_reports_lost_for_the_nodes_sake_is_requeued(
    reason: str, requeued: bool
) -> None:
    log = Log()
    submit(log)
    assign(log)
    job = report(log, states.LOST, reason=reason).job
    assert job is not None
    if requeued:
        assert (job.state, job.attempts) == (states.PENDING, 0)
        assert job.reason == "requeued: lost with node n1 (attempt not spent)"
    else:
        assert (job.state, job.attempts) == (states.LOST, 1)
    assert job.past_runs[-1].state == states.LOST
    # A job that opts out spends its (only) attempt either way.
    opted_out = Log()
    submit(opted_out, no_requeue=True)
    assign(opted_out)
    ended = report(opted_out, states.LOST, reason=reason).job
    assert ended is not None
    assert ended.state == states.LOST


def test_a_node_loss_ends_a_job_with_a_cancel_pending_cancelled() -> None:
    log = Log()
    submit(log, retries=3)
    assign(log)
    log.apply(CancelJob("j1", "alice", False, "enough", 25 * SECOND))
    (job,) = log.apply(NodeLost("n1", "gone", 30 * SECOND)).changed
    assert (job.state, job.reason) == (states.CANCELLED, "cancelled by alice: enough")
    assert job.past_runs[-1].state == states.CANCELLED


@settings(max_examples=200, deadline=None)
@given(
    retries=st.integers(0, 3),
    failures=st.integers(0, 3),
    cancelled=st.booleans(),
    no_requeue=st.booleans(),
    by_node=st.booleans(),
)
def test_a_node_loss_requeues_unless_no_requeue_which_keeps_the_retry_rules(
    retries: int, failures: int, cancelled: bool, no_requeue: bool, by_node: bool
) -> None:
    """Whatever the retries and failures before: lost with its node (``NodeLost``, or
    the node's own lease-lapsed report), a job is pending at once at the attempt it
    was at; with ``no_requeue``, exactly what a lost run did before requeueing was
    made (cancelled if asked to, else retried after a backoff while retries remain,
    else lost)."""
    failures = min(failures, retries)  # each one was retried: the job is still live
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    submit(log, retries=retries, no_requeue=no_requeue)
    at = 20 * SECOND
    for attempt in range(1, failures + 1):
        assign(log, run=f"r{attempt}", attempt=attempt, at=at)
        at += 1000 * SECOND
        failed = report(log, states.FAILED, run=f"r{attempt}", exit_code=1, at=at).job
        assert failed is not None
        assert failed.state == states.PENDING
        at += 1000 * SECOND  # past any backoff
    attempt = failures + 1
    assign(log, run="last", attempt=attempt, at=at)
    if cancelled:
        log.apply(CancelJob("j1", "alice", False, "", at + 1))
    at += SECOND
    if by_node:
        result = log.apply(NodeLost("n1", "dead", at))
    else:
        reason = "lost: no word from a leader for 30 s (lease expired)"
        result = report(log, states.LOST, run="last", reason=reason, at=at)
    job = log.state.job("j1")
    assert job is not None
    assert result.changed == (job,)
    assert job.past_runs[-1].assignment.run_id == "last"
    assert len(job.past_runs) == failures + 1
    if cancelled:
        expected = (states.CANCELLED, attempt, 0)
    elif not no_requeue:
        expected = (states.PENDING, attempt - 1, 0)
    elif attempt <= retries:
        expected = (states.PENDING, attempt, at + retry_backoff_us(attempt, SECOND))
    else:
        expected = (states.LOST, attempt, 0)
    assert (job.state, job.attempts, job.not_before_us) == expected


def test_a_terminal_job_refuses_every_command() -> None:
    log = Log()
    submit(log)
    assign(log)
    report(log, states.SUCCEEDED, exit_code=0)
    ended = log.state.job("j1")
    for command in (
        CancelJob("j1", "alice", True, "", 99 * SECOND),
        AssignJob("j1", "n1", "r2", 2, (), 99 * SECOND),
        ReportRun("j1", "r1", "n1", states.FAILED, 1, "", 99 * SECOND),
        NodeLost("n1", "", 99 * SECOND),
    ):
        log.apply(command)
    assert log.state.job("j1") == ended


# -------------------------------------------------------- entries, snapshots


def test_bad_entries_are_refused_without_raising() -> None:
    state = ControlState()
    for index, data in enumerate((b"\xff\xff\xff", b"", b"\x0a\x02\x08"), start=1):
        result = state.apply(1, index, data)
        assert (result.ok, result.error) == (False, ErrorKind.INVALID)
        assert state.applied_index == index
    replayed = state.apply(1, 2, encode(SubmitJob("a", spec(), "u", "", 0)))
    assert replayed.error is ErrorKind.INVALID
    assert len(state) == 0


def test_snapshot_restores_every_job_and_index() -> None:
    log = Log()
    submit(log, "a", key="k", gpus=1)
    submit(log, "b", retries=1)
    assign(log, "a", run="ra", gpus=(0,))
    assign(log, "b", run="rb", node="n2")
    report(log, states.FAILED, job_id="b", run="rb", node="n2", exit_code=2)
    data = log.state.snapshot()
    restored = ControlState.from_snapshot(data)
    assert restored.snapshot() == data
    assert restored.applied_index == log.state.applied_index == 5
    assert restored.jobs() == log.state.jobs()
    assert restored.active_on("n1") == log.state.active_on("n1")
    assert restored.by_idempotency("alice", "k") == log.state.job("a")
    assert restored.counts_by_state() == log.state.counts_by_state()
    # The instance form (the Raft runner's) replaces whatever was there.
    other = Log()
    submit(other, "zzz")
    other.state.restore(data)
    assert [job.id for job in other.state.jobs()] == ["a", "b"]
    with pytest.raises(ControlSnapshotError):
        ControlState.from_snapshot(b"\xff\xff")
    with pytest.raises(ControlSnapshotError):
        ControlState.from_snapshot(b"")  # format 0


def test_a_snapshot_encoder_encodes_the_state_as_it_was_when_taken() -> None:
    """The Raft runner encodes in a worker thread while entries go on applying."""
    log = Log()
    submit(log, "a", gpus=1)
    assign(log, "a", run="ra", gpus=(0,))
    expected = log.state.snapshot()
    encode = log.state.snapshot_encoder()
    submit(log, "b")
    report(log, states.SUCCEEDED, job_id="a", run="ra", exit_code=0)
    assert encode() == expected
    assert [job.id for job in ControlState.from_snapshot(encode()).jobs()] == ["a"]
    assert log.state.snapshot() != expected


def test_queries_filter_in_submit_order() -> None:
    log = Log()
    for name, user, queue in (("a", "u1", "q1"), ("b", "u2", "q1"), ("c", "u1", "q2")):
        log.apply(SubmitJob(name, spec(queue=queue), user, "", 0))
    assign(log, "c", run="rc")
    assign(log, "a", run="ra")
    found = log.state.jobs(states=[states.SCHEDULED, states.PENDING])
    assert [job.id for job in found] == ["a", "b", "c"]
    assert [job.id for job in log.state.jobs(user="u1")] == ["a", "c"]
    assert [job.id for job in log.state.jobs(queue="q1", states=[states.PENDING])] == ["b"]
    assert [job.id for job in log.state.active_on("n1")] == ["a", "c"]


def test_ten_thousand_submissions_apply_quickly() -> None:
    specs = spec(gpus=1)
    entries = [encode(SubmitJob(f"j{i}", specs, "u", f"k{i}", i)) for i in range(10_000)]
    state = ControlState()
    began = time.perf_counter()
    for index, data in enumerate(entries, start=1):
        state.apply(1, index, data)
    elapsed = time.perf_counter() - began
    assert len(state) == 10_000
    assert elapsed < 2.0, f"{10_000 / elapsed:.0f} submissions/s"


# ------------------------------------------------------------------ revoke


def test_a_revoked_assignment_puts_the_job_back_without_spending_an_attempt() -> None:
    log = Log()
    submit(log, retries=0)
    assign(log, run="r1")
    result = log.apply(RevokeAssignment("j1", "r1", "n1 refused the connection", 25 * SECOND))
    assert result.ok, result
    assert result.job is not None
    job = result.job
    assert (job.state, job.attempts, job.assignment) == (states.PENDING, 0, None)
    assert "n1 refused the connection" in job.reason
    # Placed again, it starts over at attempt 1, and its GPUs were given back.
    again = assign(log, run="r2", node="n2")
    assert (again.state, again.attempts) == (states.SCHEDULED, 1)


def test_only_a_run_its_node_never_spoke_of_can_be_revoked() -> None:
    log = Log()
    submit(log)
    assign(log, run="r1")
    assert report(log, states.STARTING).ok
    refused = log.apply(RevokeAssignment("j1", "r1", "refused", 25 * SECOND))
    assert refused.error is ErrorKind.STALE
    stale = log.apply(RevokeAssignment("j1", "r0", "refused", 25 * SECOND))
    assert stale.error is ErrorKind.STALE


def test_two_runs_without_gpus_on_one_node_both_end_cleanly() -> None:
    # Regression (found by the chaos test): the first run's release dropped the
    # node's GPU index while the second, also GPU-less, still ran there, and the
    # second's report failed half-applied with KeyError.
    log = Log()
    submit(log, "a")
    submit(log, "b")
    assign(log, "a", node="n1", run="ra")
    assign(log, "b", node="n1", run="rb")
    first = report(log, states.SUCCEEDED, job_id="a", run="ra", exit_code=0)
    second = report(log, states.SUCCEEDED, job_id="b", run="rb", exit_code=0)
    assert first.ok, first
    assert second.ok, second
    assert log.state.active_on("n1") == []
