"""Who goes first, and how another order plugs in."""

from __future__ import annotations

import dataclasses
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
from murmur.scheduler.fair_share import fair_share, multifactor_order
from murmur.scheduler.lab_policy import parse_policy
from murmur.scheduler.queue_order import QueueOrder, lenders_first
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


def array_tasks(array_id: str, indices: Sequence[int]) -> list[JobRequest]:
    """An array's tasks as the leader asks for them: one submit order, ranked by index."""
    return [
        dataclasses.replace(make_job(f"{array_id}[{index}]", submit_order=7), submit_rank=index)
        for index in indices
    ]


ORDERS = {
    "priority": priority_then_submit_order,
    "fifo": submit_order_only,
    "multifactor": multifactor_order(parse_policy(""), fair_share(parse_policy(""), {}), 0, {}),
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=list(ORDERS))
@given(indices=st.sets(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40))
def test_an_arrays_tasks_go_in_index_order_whatever_their_ids_sort_to(
    order: QueueOrder, indices: set[int]
) -> None:
    tasks = array_tasks("4b1d", sorted(indices, key=str))  # as their ids sort: 10 before 2
    assert ids(order(tasks)) == [f"4b1d[{index}]" for index in sorted(indices)]


def test_an_array_without_a_limit_starts_its_lowest_indices_first() -> None:
    snapshot = make_snapshot([make_node("node-1", 3)], array_tasks("4b1d", range(12)))
    assert ids_of_placed(schedule(snapshot)) == ["4b1d[0]", "4b1d[1]", "4b1d[2]"]


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
