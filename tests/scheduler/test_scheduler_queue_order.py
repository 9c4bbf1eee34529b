"""Who goes first, and how another order plugs in."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler import (
    JobRequest,
    Plan,
    Policy,
    QueueOrderError,
    priority_then_submit_order,
    schedule,
    submit_order_only,
)
from murmur.scheduler.queue_order import lenders_first
from tests.scheduler.builders import make_job, make_node, make_snapshot


def ids(jobs: Sequence[JobRequest]) -> list[str]:
    return [job.id for job in jobs]


def test_priority_first_then_submission_then_id() -> None:
    jobs = [
        make_job("late-low", priority=0, submit_order=5),
        make_job("early-low", priority=0, submit_order=1),
        make_job("high", priority=3, submit_order=9),
        make_job("b-tie", priority=0, submit_order=1),
    ]
    assert ids(priority_then_submit_order(jobs)) == ["high", "b-tie", "early-low", "late-low"]
    assert ids(submit_order_only(jobs)) == ["b-tie", "early-low", "late-low", "high"]


def test_a_custom_order_decides_who_gets_the_last_gpu() -> None:
    def youngest_first(pending: Sequence[JobRequest]) -> list[JobRequest]:
        return sorted(pending, key=lambda job: -job.submit_order)

    snapshot = make_snapshot(
        [make_node("node-1", 1)],
        [make_job("old", submit_order=1), make_job("young", submit_order=2)],
    )
    assert ids_of_placed(schedule(snapshot)) == ["old"]
    assert ids_of_placed(schedule(snapshot, policy=Policy(queue_order=youngest_first))) == ["young"]


def ids_of_placed(plan: Plan) -> list[str]:
    return [placement.job_id for placement in plan.placements]


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (lambda pending: pending[:-1], "2 pending jobs, 1 returned"),
        (lambda pending: [pending[0], pending[0]], "lost \\['b'\\]"),
        (lambda pending: [pending[0], make_job("c")], "unknown \\['c'\\]"),
    ],
)
def test_an_order_that_loses_or_invents_jobs_is_refused(broken: object, problem: str) -> None:
    snapshot = make_snapshot([make_node("n")], [make_job("a"), make_job("b")])
    with pytest.raises(QueueOrderError, match=problem):
        schedule(snapshot, policy=Policy(queue_order=broken))  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 20), min_size=1, max_size=12, unique=True), st.data())
def test_lenders_first_puts_borrowers_last_and_keeps_each_part_in_order(
    orders: list[int], data: st.DataObject
) -> None:
    jobs = [make_job(f"j{n}", submit_order=n) for n in orders]
    borrowing = {job.id for job in jobs if data.draw(st.booleans(), label=job.id)}
    within = ids(priority_then_submit_order(jobs))
    ordered = ids(lenders_first(borrowing, priority_then_submit_order)(jobs))
    assert ordered == [i for i in within if i not in borrowing] + [
        i for i in within if i in borrowing
    ]
