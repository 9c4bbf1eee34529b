"""Properties of the control state over random command streams.

A stream is a list of small integer tuples that ``_command`` turns into commands
against the state as it stands (so that most assignments and reports name real jobs,
runs and attempts, and some do not). The bytes it produced are then replayed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    ClusterJob,
    Command,
    ControlState,
    NodeLost,
    ReportRun,
    SubmitJob,
    encode,
)
from murmur.node.control.queue.commands import RankPlacement
from murmur.node.control.queue.records import ACTIVE_STATES
from murmur.node.jobspec import states
from tests.node.control.queue.builders import SECOND, spec

Op = tuple[int, int, int, int]

ops = st.lists(
    st.tuples(st.integers(0, 9), st.integers(0, 11), st.integers(0, 11), st.integers(0, 11)),
    min_size=15,
    max_size=80,
)

_REPORTED = (
    states.STARTING, states.RUNNING, states.SUCCEEDED, states.FAILED, states.CANCELLED, states.LOST,
)  # fmt: skip


_LOST_REASONS = ("", "lost: no word from a leader for 30 s (lease expired)", "lost: gone")
"""Reasons a report may give: none, a loss for the node's sake (requeued), another."""


def _command(state: ControlState, step: int, op: Op) -> Command | bytes:
    kind, a, b, c = op
    at = step * 3 * SECOND
    jobs = state.jobs()
    # Mostly name a job that exists, so that the rules past "not found" are reached.
    job_id = jobs[a % len(jobs)].id if jobs and kind > 1 and a < 10 else f"j{a % 8}"
    job = state.job(job_id)
    if kind <= 1:
        key = ("", "k0", "k1")[c % 3]
        job_spec = spec(
            gpus=b % 3, share=c % 2 == 0, retries=a % 3, cpus=0.5, no_requeue=c % 4 == 1,
            nodes=2 if a % 4 == 3 else 1,
        )  # fmt: skip
        return SubmitJob(job_id, job_spec, f"u{b % 2}", key, at)
    if kind == 2:
        return CancelJob(job_id, f"u{b % 2}", c % 4 == 0, "r" * (c % 2), at)
    if kind in (3, 4):
        attempt = job.attempts + 1 if job is not None and c % 5 else c
        count = job.spec.gpus.count if job is not None and c % 7 else c % 3
        gpus = tuple(range(c % 4, c % 4 + count))
        if job is None or not job.is_gang or a % 5 == 4:
            return AssignJob(job_id, f"n{b % 3}", f"run{step}", attempt, gpus, at)
        # A gang: its second rank on another node (now and then the same one, or
        # with no rendezvous port: both refused).
        other = RankPlacement(f"n{(b + (a % 6 != 5)) % 3}", gpus)
        port = 29500 if a % 7 else 0
        return AssignJob(job_id, f"n{b % 3}", f"run{step}", attempt, gpus, at, (other,), port)
    if kind in (5, 6, 7):
        live = job.live_runs if job is not None else ()
        current = live[a % len(live)] if live else None
        if current is not None and b % 4:
            run_id, node = current.run_id, current.node
        else:
            run_id, node = f"run{b}", f"n{b % 3}"
        exit_code = None if c % 3 == 0 else c % 2
        reason = _LOST_REASONS[a % len(_LOST_REASONS)]
        return ReportRun(job_id, run_id, node, _REPORTED[c % 6], exit_code, reason, at, c == 11)
    if kind == 8:
        return NodeLost(f"n{a % 3}", "gone", at)
    return bytes([a, b, c])  # garbage, or a truncated message


def _run(ops: list[Op], check: bool = False) -> tuple[ControlState, list[tuple[int, int, bytes]]]:
    state = ControlState(retry_backoff_base_us=SECOND)
    entries = []
    ended: dict[str, ClusterJob] = {}
    for step, op in enumerate(ops, start=1):
        made = _command(state, step, op)
        data = made if isinstance(made, bytes) else encode(made)
        term = 1 + step // 10
        entries.append((term, step, data))
        state.apply(term, step, data)
        if check:
            _check_invariants(state, ended)
    return state, entries


def _check_invariants(state: ControlState, ended: dict[str, ClusterJob]) -> None:
    jobs = state.jobs()
    counts = state.counts_by_state()
    assert all(count >= 0 for count in counts.values())
    assert sum(counts.values()) == len(jobs) == len(state)
    for name, count in counts.items():
        assert count == sum(1 for job in jobs if job.state == name)
    active: dict[str, set[str]] = {}
    run_ids: set[str] = set()
    gpus: dict[tuple[str, int], list[ClusterJob]] = {}
    for job in jobs:
        assert bool(job.live_runs) == (job.state in ACTIVE_STATES), job
        assert len(job.runs) in (0, max(1, job.spec.nodes)), "a gang is placed whole"
        assert len({rank.node for rank in job.runs}) == len(job.runs)
        if job.gang_stop is not None:
            assert job.is_gang
            assert job.is_active
        if job.cancel_requested:
            assert job.state in ACTIVE_STATES or job.state == states.CANCELLED
        # Runs lost with their node give their attempt back: none is ever past the
        # retries, and a pending job is one whose next attempt is allowed.
        assert job.attempts <= job.spec.retries + 1, job
        if job.state == states.PENDING:
            assert job.attempts <= job.spec.retries, job
        if job.runs:
            assert job.runs[0].run_id not in run_ids
            run_ids.add(job.runs[0].run_id)
            assert {rank.run_id for rank in job.runs} == {job.runs[0].run_id}
        for rank in job.live_runs:  # an ended rank of a gang holds nothing
            assert rank.attempt == job.attempts
            active.setdefault(rank.node, set()).add(job.id)
            for index in rank.gpu_indices:
                gpus.setdefault((rank.node, index), []).append(job)
        if job.id in ended:
            assert job == ended[job.id], "a terminal job changed"
        elif job.is_terminal:
            ended[job.id] = job
    for node in ("n0", "n1", "n2"):
        assert {job.id for job in state.active_on(node)} == active.get(node, set())
    for holders in gpus.values():
        assert len(holders) == 1 or all(job.shares_gpus for job in holders)
    pending = [job.id for job in jobs if job.state == states.PENDING]
    assert [job.id for job in state.jobs(states=[states.PENDING])] == pending


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_streams_keep_every_invariant(stream: list[Op]) -> None:
    _run(stream, check=True)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_same_entries_give_the_same_state(stream: list[Op]) -> None:
    first, entries = _run(stream)
    second = ControlState(retry_backoff_base_us=SECOND)
    for term, index, data in entries:
        second.apply(term, index, data)
    assert second.snapshot() == first.snapshot()
    assert second.jobs() == first.jobs()


@settings(max_examples=150, deadline=None)
@given(ops, st.integers(0, 60))
def test_a_snapshot_anywhere_then_the_rest_gives_the_same_state(stream: list[Op], cut: int) -> None:
    whole, entries = _run(stream)
    cut = min(cut, len(entries))
    before = ControlState(retry_backoff_base_us=SECOND)
    for term, index, data in entries[:cut]:
        before.apply(term, index, data)
    after = ControlState.from_snapshot(before.snapshot(), retry_backoff_base_us=SECOND)
    assert after.applied_index == before.applied_index
    for term, index, data in entries[cut:]:
        after.apply(term, index, data)
    assert after.snapshot() == whole.snapshot()
    assert after.jobs() == whole.jobs()
    for node in ("n0", "n1", "n2"):
        assert after.active_on(node) == whole.active_on(node)
    assert after.counts_by_state() == whole.counts_by_state()
