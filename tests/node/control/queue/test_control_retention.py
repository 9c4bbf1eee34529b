"""ForgetJobs: the control state forgets ended jobs past the retention, the same on
every voter, and keeps every index in step (issue 11 part 4)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.queue import (
    ApplyResult,
    AssignJob,
    ClusterJob,
    Command,
    ControlState,
    ErrorKind,
    ForgetJobs,
    SetNodeDrain,
    SubmitJob,
    decode,
    encode,
)
from murmur.node.control.queue.commands import MAX_FORGET_JOBS
from murmur.node.jobspec import states
from tests.node.control.queue.builders import SECOND, Log, end_run, spec
from tests.node.control.queue.test_control_properties import Op, _check_invariants, _command

DAY = 86_400 * SECOND


def finished(log: Log, job_id: str, *, at: int, state: str = states.SUCCEEDED) -> ClusterJob:
    """A job submitted, placed and ended at ``at``."""
    log.apply(SubmitJob(job_id, spec(), "alice", f"key-{job_id}", at - 3 * SECOND))
    assigned = log.apply(AssignJob(job_id, "n1", f"run-{job_id}", 1, (), at - 2 * SECOND))
    assert assigned.job is not None
    ended = end_run(log, assigned.job, state, 0 if state == states.SUCCEEDED else 1, at)
    assert ended.job is not None
    assert ended.job.is_terminal
    return ended.job


def forget(log: Log, *job_ids: str, retention: int = DAY, at: int) -> ApplyResult:
    result = log.apply(ForgetJobs(tuple(job_ids), retention, at))
    assert result.ok, result
    return result


def test_the_command_survives_its_bytes() -> None:
    command = ForgetJobs(("a", "b"), DAY, 123)
    assert decode(encode(command)) == command


def test_only_ended_jobs_older_than_the_retention_go() -> None:
    log = Log()
    old = finished(log, "old", at=10 * SECOND)
    failed = finished(log, "failed", at=20 * SECOND, state=states.FAILED)
    young = finished(log, "young", at=DAY)
    log.apply(SubmitJob("pending", spec(), "alice", "", 5 * SECOND))
    log.apply(SubmitJob("running", spec(), "alice", "", 5 * SECOND))
    log.apply(AssignJob("running", "n1", "r-running", 1, (), 6 * SECOND))
    now = DAY + 30 * SECOND  # "old" and "failed" ended over a day ago; "young" did not
    assert log.state.forgettable(now, DAY, 100) == ["old", "failed"]
    result = forget(log, "old", "failed", "young", "pending", "running", "unknown", at=now)
    assert result.forgotten == (old, failed)
    assert result.changed == ()
    assert [job.id for job in log.state.jobs()] == ["young", "pending", "running"]
    assert log.state.job("old") is None
    assert log.state.counts_by_state()[states.SUCCEEDED] == 1
    assert log.state.counts_by_state()[states.FAILED] == 0
    assert log.state.active_on("n1")[0].id == "running"
    assert log.state.forgettable(now, DAY, 100) == []
    # Its idempotency key went with it: the same key makes a new job now.
    assert log.state.by_idempotency("alice", "key-old") is None
    again = log.apply(SubmitJob("old-again", spec(), "alice", "key-old", now))
    assert again.job is not None
    assert again.job.id == "old-again"
    # Named again: nothing to do.
    assert forget(log, "old", at=now).forgotten == ()
    assert young == log.state.job("young")


def test_each_voter_checks_the_commands_own_time_not_the_leaders_word() -> None:
    log = Log()
    job = finished(log, "j1", at=100 * SECOND)
    # A leader whose clock is behind names it anyway: the command's time rules.
    assert forget(log, "j1", retention=DAY, at=DAY).forgotten == ()
    assert forget(log, "j1", retention=DAY, at=DAY + 100 * SECOND).forgotten == (job,)


def test_a_malformed_command_changes_nothing() -> None:
    log = Log()
    finished(log, "j1", at=10 * SECOND)
    negative = log.apply(ForgetJobs(("j1",), -1, DAY))
    assert negative.error is ErrorKind.INVALID
    too_many = log.apply(ForgetJobs(("j1",) * (MAX_FORGET_JOBS + 1), 0, DAY))
    assert too_many.error is ErrorKind.INVALID
    assert log.state.job("j1") is not None


def test_forgettable_is_bounded_and_longest_ended_first_even_after_a_restore() -> None:
    log = Log()
    # Submitted in one order, ended in another.
    for job_id in ("a", "b", "c", "d"):
        log.apply(SubmitJob(job_id, spec(), "alice", "", SECOND))
    for job_id, end in (("b", 10), ("d", 20), ("c", 30), ("a", 50)):
        placed = log.apply(AssignJob(job_id, "n1", f"r{job_id}", 1, (), 2 * SECOND))
        assert placed.job is not None
        end_run(log, placed.job, states.SUCCEEDED, 0, end * SECOND)
    assert log.state.forgettable(100 * SECOND, 0, 10) == ["b", "d", "c", "a"]
    assert log.state.forgettable(100 * SECOND, 0, 2) == ["b", "d"]
    assert log.state.forgettable(100 * SECOND, 75 * SECOND, 10) == ["b", "d"]
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.forgettable(100 * SECOND, 0, 10) == ["b", "d", "c", "a"]


def test_a_snapshot_after_forgetting_holds_only_what_is_left() -> None:
    log = Log()
    for i in range(20):
        finished(log, f"j{i}", at=(i + 3) * SECOND)
    forget(log, *(f"j{i}" for i in range(10)), retention=0, at=12 * SECOND)
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert [job.id for job in restored.jobs()] == [f"j{i}" for i in range(10, 20)]
    assert restored.snapshot() == log.state.snapshot()
    assert restored.by_idempotency("alice", "key-j3") is None
    assert restored.by_idempotency("alice", "key-j13") == log.state.job("j13")


def test_with_retention_applied_the_state_and_snapshot_stay_flat() -> None:
    log = Log()
    sizes = []
    for day in range(1, 31):
        for i in range(20):
            finished(log, f"d{day}-{i}", at=day * DAY + i * SECOND)
        now = day * DAY + DAY // 2
        due = log.state.forgettable(now, 3 * DAY, MAX_FORGET_JOBS)
        if due:
            forget(log, *due, retention=3 * DAY, at=now)
        sizes.append((len(log.state), len(log.state.snapshot())))
    assert max(count for count, _ in sizes) == 60  # three days' worth
    steady = [size for _, size in sizes[5:]]
    assert max(steady) - min(steady) <= max(steady) // 50


# --------------------------------------------------------------- properties


def _retention_command(state: ControlState, step: int, op: Op) -> Command | bytes:
    """The property tests' commands, with drains and ForgetJobs of chosen jobs."""
    kind, a, b, c = op
    at = step * 3 * SECOND
    if kind == 10:
        jobs = state.jobs()
        named = tuple(jobs[(a + i * b) % len(jobs)].id for i in range(c % 5)) if jobs else ()
        return ForgetJobs((*named, f"j{a % 8}"), (b % 4) * 6 * SECOND, at)
    if kind == 11:
        return SetNodeDrain(f"n{a % 3}", b % 2 == 0, "admin", at)
    return _command(state, step, op)


ops = st.lists(
    st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(0, 11), st.integers(0, 11)),
    min_size=15,
    max_size=80,
)


def _run(
    stream: list[Op], check: bool = False
) -> tuple[ControlState, list[tuple[int, int, bytes]], list[tuple[str, ...]]]:
    state = ControlState(retry_backoff_base_us=SECOND)
    entries = []
    forgotten_by_entry = []
    ended: dict[str, ClusterJob] = {}
    for step, op in enumerate(stream, start=1):
        made = _retention_command(state, step, op)
        data = made if isinstance(made, bytes) else encode(made)
        term = 1 + step // 10
        entries.append((term, step, data))
        before = {job.id: job for job in state.jobs()}
        result = state.apply(term, step, data)
        forgotten_by_entry.append(tuple(job.id for job in result.forgotten))
        for job in result.forgotten:
            ended.pop(job.id, None)  # its id may be taken again by a new job
        if isinstance(made, ForgetJobs) and result.ok:
            cutoff = made.at_us - made.retention_us
            due = {
                job_id
                for job_id in made.job_ids
                if job_id in before
                and before[job_id].is_terminal
                and before[job_id].updated_at_us <= cutoff
            }
            assert {job.id for job in result.forgotten} == due
            assert all(state.job(job_id) is None for job_id in due)
            assert len(state) == len(before) - len(due)
        if isinstance(made, AssignJob) and made.node in state.drained_nodes():
            assert not result.ok
        if check:
            _check_invariants(state, ended)
            _check_indexes(state)
    return state, entries, forgotten_by_entry


def _check_indexes(state: ControlState) -> None:
    jobs = {job.id: job for job in state.jobs()}
    counts = state.counts_by_state()
    assert sum(counts.values()) == len(jobs)
    for wanted in states.TERMINAL:
        assert {job.id for job in state.jobs(states=[wanted])} == {
            job.id for job in jobs.values() if job.state == wanted
        }
    ended = {job_id for job_id, job in jobs.items() if job.is_terminal}
    assert set(state.forgettable(10**15, 0, 10**6)) == ended
    for job in jobs.values():
        if job.idempotency_key:
            found = state.by_idempotency(job.user, job.idempotency_key)
            assert found is not None
            assert found.id in jobs


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_streams_with_forgetting_keep_every_index_in_step(stream: list[Op]) -> None:
    _run(stream, check=True)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_every_voter_forgets_the_same(stream: list[Op]) -> None:
    first, entries, forgotten = _run(stream)
    second = ControlState(retry_backoff_base_us=SECOND)
    again = [
        tuple(job.id for job in second.apply(term, index, data).forgotten)
        for term, index, data in entries
    ]
    assert again == forgotten
    assert second.snapshot() == first.snapshot()
    assert second.drains() == first.drains()


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(0, 60))
def test_a_snapshot_anywhere_then_the_rest_gives_the_same_state(stream: list[Op], cut: int) -> None:
    whole, entries, forgotten = _run(stream)
    cut = min(cut, len(entries))
    before = ControlState(retry_backoff_base_us=SECOND)
    for term, index, data in entries[:cut]:
        before.apply(term, index, data)
    after = ControlState.from_snapshot(before.snapshot(), retry_backoff_base_us=SECOND)
    rest = [
        tuple(job.id for job in after.apply(term, index, data).forgotten)
        for term, index, data in entries[cut:]
    ]
    assert rest == forgotten[cut:]
    assert after.snapshot() == whole.snapshot()
    assert after.jobs() == whole.jobs()
    assert after.drained_nodes() == whole.drained_nodes()
    _check_indexes(after)
