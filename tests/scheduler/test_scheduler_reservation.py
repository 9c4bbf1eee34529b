"""Room held for blocked jobs: what it blocks, what it lets through, who gets it."""

from __future__ import annotations

from murmur.scheduler import (
    FIFO_FIRST_FIT_POLICY,
    GpuState,
    NodeState,
    Plan,
    Policy,
    Reservation,
    schedule,
)
from tests.scheduler.builders import GIB, make_job, make_node, make_snapshot

NO_RESERVATIONS = Policy(reserve_for_blocked_jobs=False)


def placed_on(plan: Plan) -> dict[str, str]:
    return {p.job_id: p.assignments[0].node for p in plan.placements}


def reasons(plan: Plan) -> dict[str, str]:
    return {w.job_id: w.reason for w in plan.waiting}


def test_the_blocked_head_of_line_keeps_its_node_from_later_jobs() -> None:
    snapshot = make_snapshot(
        [make_node("node-1", busy=range(6))], [make_job("big", 4), make_job("small", 1)]
    )
    plan = schedule(snapshot)
    assert plan.reservations == (Reservation("big", "default", ("node-1",)),)
    assert reasons(plan) == {
        "big": "waiting: 4 GPUs asked, 2 free on node-1",
        "small": "waiting: behind job big (submitted earlier) in queue default",
    }
    assert placed_on(schedule(snapshot, policy=NO_RESERVATIONS)) == {"small": "node-1"}


def two_nodes() -> list[NodeState]:
    return [make_node("node-a", busy=range(6)), make_node("node-b", busy=range(7))]


def test_the_closest_node_is_reserved_and_the_others_stay_open() -> None:
    jobs = [make_job("big", 4), make_job("two", 2), make_job("one", 1)]
    plan = schedule(make_snapshot(two_nodes(), jobs))
    assert plan.reservations == (Reservation("big", "default", ("node-a",)),)
    assert placed_on(plan) == {"one": "node-b"}
    assert reasons(plan)["two"] == "waiting: behind job big (submitted earlier) in queue default"


def test_a_reservation_binds_later_jobs_of_every_queue() -> None:
    jobs = [make_job("big", 4, priority=2), make_job("other", 2, queue="other", priority=1)]
    plan = schedule(make_snapshot(two_nodes(), jobs))
    assert reasons(plan)["other"] == "waiting: behind job big (higher priority) in queue default"


def test_jobs_ahead_of_the_reserver_are_not_held_back() -> None:
    jobs = [make_job("big", 4, priority=0), make_job("urgent", 2, queue="other", priority=9)]
    plan = schedule(make_snapshot(two_nodes(), jobs))
    assert placed_on(plan) == {"urgent": "node-a"}


def test_later_jobs_may_take_what_the_reserver_cannot_use() -> None:
    gpus = tuple(GpuState(i, "A100", holders=("run",) if i < 2 else ()) for i in range(4)) + tuple(
        GpuState(i, "T4") for i in range(4, 8)
    )
    node = NodeState("mixed", gpus, 64, 64, 512 * GIB, 512 * GIB)
    jobs = [
        make_job("big", 4, model="A100", cpus=8),
        make_job("t4", 2, model="T4"),
        make_job("a100", 1, model="A100"),
        make_job("cpu-small", 0, cpus=16),
        make_job("cpu-greedy", 0, cpus=45),
    ]
    plan = schedule(make_snapshot([node], jobs))
    assert plan.reservations == (Reservation("big", "default", ("mixed",)),)
    assert placed_on(plan) == {"t4": "mixed", "cpu-small": "mixed"}
    assert reasons(plan)["a100"].startswith("waiting: behind job big")
    # 64 - 16 - 45 = 3 CPUs would be left, fewer than the 8 big asks.
    assert reasons(plan)["cpu-greedy"].startswith("waiting: behind job big")


def test_a_job_that_can_never_run_reserves_nothing_and_the_next_one_does() -> None:
    jobs = [make_job("huge", 16), make_job("big", 4), make_job("small", 1)]
    plan = schedule(make_snapshot([make_node("node-1", busy=range(6))], jobs))
    assert plan.reservations == (Reservation("big", "default", ("node-1",)),)
    assert reasons(plan)["huge"] == "waiting: 16 GPUs asked, node-1 has 8 in all"


def test_one_reservation_per_queue_on_distinct_nodes() -> None:
    nodes = [make_node(f"node-{n}", busy=range(6)) for n in range(3)]
    jobs = [
        make_job("a-big", 4, queue="a"),
        make_job("a-next", 4, queue="a"),
        make_job("b-big", 4, queue="b"),
        make_job("tiny", 1, queue="c"),
    ]
    plan = schedule(make_snapshot(nodes, jobs))
    assert plan.reservations == (
        Reservation("a-big", "a", ("node-0",)),
        Reservation("b-big", "b", ("node-1",)),
    )
    assert placed_on(plan) == {"tiny": "node-2"}


def test_a_gang_reserves_one_node_per_rank() -> None:
    nodes = [make_node(f"node-{n}", busy=range(n + 4)) for n in range(3)]
    plan = schedule(make_snapshot(nodes, [make_job("gang", 8, nodes=2), make_job("one", 1)]))
    assert plan.reservations == (Reservation("gang", "default", ("node-0", "node-1")),)
    assert placed_on(plan) == {"one": "node-2"}


def test_a_sharing_reserver_lets_other_sharers_join() -> None:
    node = make_node("node-1", 2, busy={0}, shared={1})
    jobs = [make_job("pair", 2, share=True), make_job("joiner", 1, share=True), make_job("x", 1)]
    plan = schedule(make_snapshot([node], jobs))
    assert plan.reservations == (Reservation("pair", "default", ("node-1",)),)
    assert placed_on(plan) == {"joiner": "node-1"}


def test_the_baseline_reserves_nothing() -> None:
    snapshot = make_snapshot(two_nodes(), [make_job("big", 4), make_job("two", 2)])
    plan = schedule(snapshot, policy=FIFO_FIRST_FIT_POLICY)
    assert plan.reservations == ()
    assert placed_on(plan) == {"two": "node-a"}
