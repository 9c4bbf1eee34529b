"""Placement rules of ``schedule``: no double handing, gangs, order, policies."""

from __future__ import annotations

from murmur.scheduler import (
    FIFO_FIRST_FIT_POLICY,
    DatasetLocality,
    Placement,
    Plan,
    PlanBuilder,
    Policy,
    RankAssignment,
    schedule,
)
from tests.scheduler.builders import make_job, make_node, make_snapshot


def placed(plan: Plan) -> dict[str, Placement]:
    return {placement.job_id: placement for placement in plan.placements}


def waiting(plan: Plan) -> dict[str, str]:
    return {entry.job_id: entry.reason for entry in plan.waiting}


def test_an_empty_snapshot_gives_an_empty_plan() -> None:
    assert schedule(make_snapshot([], [])) == Plan((), (), ())


def test_a_job_gets_the_gpus_it_asked_for() -> None:
    plan = schedule(make_snapshot([make_node("node-1", busy={0})], [make_job("j", 2)]))
    assert plan.placements == (Placement("j", (RankAssignment(0, "node-1", (1, 2)),)),)
    assert plan.waiting == ()


def test_gpus_cpus_and_memory_are_never_handed_out_twice_in_one_plan() -> None:
    node = make_node("node-1", 8, cpus=16, memory_gib=100)
    jobs = [make_job("a", 4), make_job("b", 4), make_job("c", 1)]
    plan = schedule(make_snapshot([node], jobs))
    assert placed(plan)["a"].assignments[0].gpu_indices == (0, 1, 2, 3)
    assert placed(plan)["b"].assignments[0].gpu_indices == (4, 5, 6, 7)
    assert waiting(plan)["c"] == "waiting: 1 GPU asked, 0 free on node-1"

    cpu_jobs = [make_job(f"cpu{n}", 0, cpus=6, memory_gib=30) for n in range(3)]
    plan = schedule(make_snapshot([node], cpu_jobs))
    assert sorted(placed(plan)) == ["cpu0", "cpu1"]
    assert waiting(plan)["cpu2"] == "waiting: 6 CPUs asked, 4 free on node-1"


def test_sharing_jobs_share_a_gpu_and_exclusive_jobs_do_not_join_them() -> None:
    jobs = [make_job("s1", share=True), make_job("s2", share=True), make_job("x")]
    plan = schedule(make_snapshot([make_node("node-1", 1)], jobs))
    assert placed(plan)["s1"].assignments[0].gpu_indices == (0,)
    assert placed(plan)["s2"].assignments[0].gpu_indices == (0,)
    assert waiting(plan)["x"] == "waiting: 1 GPU asked, 0 free on node-1"


def test_higher_priority_goes_first_even_when_submitted_later() -> None:
    jobs = [make_job("low", 1, priority=0), make_job("high", 1, priority=5)]
    plan = schedule(make_snapshot([make_node("node-1", 1)], jobs))
    assert list(placed(plan)) == ["high"]


def test_a_gang_gets_distinct_nodes_rank_zero_on_the_best() -> None:
    nodes = [make_node("a"), make_node("b", busy=range(4)), make_node("c", busy=range(6))]
    plan = schedule(make_snapshot(nodes, [make_job("g", 4, nodes=2)]))
    assert placed(plan)["g"].assignments == (
        RankAssignment(0, "b", (4, 5, 6, 7)),
        RankAssignment(1, "a", (0, 1, 2, 3)),
    )


def test_a_gang_that_does_not_fit_whole_takes_nothing() -> None:
    nodes = [make_node("a", 4), make_node("b", 4), make_node("c", 4, busy=range(4))]
    jobs = [make_job("gang", 4, nodes=3), make_job("small", 4, queue="other")]
    plan = schedule(make_snapshot(nodes, jobs), policy=FIFO_FIRST_FIT_POLICY)
    # Reasons speak of what the plan leaves: "small" took node a after the gang failed.
    assert waiting(plan)["gang"] == "waiting: 3 nodes asked for a gang, 1 has room"
    assert placed(plan)["small"].assignments == (RankAssignment(0, "a", (0, 1, 2, 3)),)


def test_first_fit_takes_nodes_in_snapshot_order_and_best_fit_by_score() -> None:
    nodes = [make_node("z-empty"), make_node("a-half", busy=range(4))]
    snapshot = make_snapshot(nodes, [make_job("j", 1)])
    assert schedule(snapshot, policy=FIFO_FIRST_FIT_POLICY).placements[0].assignments[0].node == (
        "z-empty"
    )
    assert schedule(snapshot).placements[0].assignments[0].node == "a-half"


def test_dataset_jobs_go_to_their_data_when_preferred_and_spill_when_full() -> None:
    nodes = [make_node("plain"), make_node("data", 2, datasets={"imagenet"})]
    jobs = [make_job(f"j{n}", 1, datasets=("imagenet",)) for n in range(3)]
    plan = schedule(make_snapshot(nodes, jobs))
    where = {job_id: p.assignments[0].node for job_id, p in placed(plan).items()}
    assert where == {"j0": "data", "j1": "data", "j2": "plain"}


def test_dataset_jobs_wait_for_their_data_when_required() -> None:
    nodes = [make_node("plain"), make_node("data", 2, datasets={"imagenet"})]
    jobs = [make_job(f"j{n}", 1, datasets=("imagenet",)) for n in range(3)]
    policy = Policy(dataset_locality=DatasetLocality.REQUIRE, reserve_for_blocked_jobs=False)
    plan = schedule(make_snapshot(nodes, jobs), policy=policy)
    assert sorted(placed(plan)) == ["j0", "j1"]
    assert waiting(plan)["j2"] == "waiting: dataset imagenet is on data, which has 0 free GPUs"


def test_positions_count_waiting_jobs_per_queue_in_order() -> None:
    jobs = [
        make_job("a1", 9, queue="a"),
        make_job("b1", 9, queue="b"),
        make_job("fits", 1, queue="a"),
        make_job("a2", 9, queue="a", priority=1),
        make_job("b2", 9, queue="b"),
    ]
    plan = schedule(make_snapshot([make_node("n")], jobs))
    assert [(w.job_id, w.position) for w in plan.waiting] == [
        ("a2", 1),
        ("a1", 2),
        ("b1", 1),
        ("b2", 2),
    ]
    assert list(placed(plan)) == ["fits"]


def test_plan_builder_decides_one_job_at_a_time_like_schedule() -> None:
    snapshot = make_snapshot([make_node("n", 2)], [make_job(f"j{n}", 1) for n in range(4)])
    builder = PlanBuilder(snapshot)
    decided = []
    while (job := builder.decide_next()) is not None:
        decided.append(job.id)
    assert decided == [job.id for job in builder.order]
    assert builder.decide_next() is None
    assert builder.build() == schedule(snapshot)
