"""EASY backfill: a job may jump a reservation only if its time limit ends before the
reserver could start; a job without a time limit never does."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import (
    DEFAULT_POLICY,
    ClusterSnapshot,
    GpuState,
    JobRequest,
    NodeState,
    Release,
    schedule,
)
from tests.scheduler.builders import GIB, make_job
from tests.scheduler.invariants import check_plan

HOUR = 3_600_000_000
NOW = 100 * HOUR


def busy_node(
    name: str = "n1", *, held: int = 6, ends_at: int | None = NOW + 2 * HOUR
) -> NodeState:
    """8 GPUs, ``held`` of them by one running job ending at ``ends_at`` (None: no limit)."""
    gpus = tuple(
        GpuState(index, "A100-80GB", 80 * GIB, ("running",) if index < held else ())
        for index in range(8)
    )
    releases = () if ends_at is None else (Release("running", ends_at, 0.0, 0),)
    return NodeState(name, gpus, 64, 64, 512 * GIB, 512 * GIB, releases=releases)


def limited(job: JobRequest, hours: float) -> JobRequest:
    return dataclasses.replace(job, time_limit_us=int(hours * HOUR))


def plan_of(nodes: list[NodeState], jobs: list[JobRequest]):  # type: ignore[no-untyped-def]
    return schedule(ClusterSnapshot(tuple(nodes), tuple(jobs), now_us=NOW))


def test_a_job_that_ends_before_the_reservation_backfills() -> None:
    head = make_job("head", 8)  # needs all 8: waits for the running job (2 h left)
    short = limited(make_job("short", 2), 1)  # done in 1 h: before the head could start
    plan = plan_of([busy_node()], [head, short])
    assert [p.job_id for p in plan.placements] == ["short"]
    assert plan.reservations[0].job_id == "head"


def test_a_job_that_would_outlast_the_shadow_time_waits_and_says_until_when() -> None:
    head = make_job("head", 8)
    long = limited(make_job("long", 2), 3)
    unlimited = make_job("unlimited", 2)
    plan = plan_of([busy_node()], [head, long, unlimited])
    assert plan.placements == ()
    reasons = {w.job_id: w.reason for w in plan.waiting}
    assert "behind job head" in reasons["long"]
    assert "reserved for it from 06:00 UTC (with a shorter time limit" in reasons["long"]
    assert "(with a time limit it could run before)" in reasons["unlimited"]


def test_without_known_ends_nothing_backfills() -> None:
    head = make_job("head", 8)
    short = limited(make_job("short", 2), 0.1)
    plan = plan_of([busy_node(ends_at=None)], [head, short])
    assert plan.placements == ()


def test_a_gpu_held_by_a_job_without_a_limit_keeps_the_shadow_unknown() -> None:
    node = busy_node()
    gpus = list(node.gpus)
    gpus[6] = GpuState(6, "A100-80GB", 80 * GIB, ("forever",))
    node = dataclasses.replace(node, gpus=tuple(gpus))
    plan = plan_of([node], [make_job("head", 8), limited(make_job("short", 1), 0.1)])
    assert plan.placements == ()


@settings(max_examples=150, deadline=None)
@given(
    held=st.integers(min_value=1, max_value=8),
    ends_in=st.integers(min_value=1, max_value=10),
    jobs=st.lists(
        st.tuples(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=12)),
        min_size=1,
        max_size=8,
    ),
)
def test_backfill_never_delays_the_reservation(
    held: int, ends_in: int, jobs: list[tuple[int, int]]
) -> None:
    """Whatever runs on a reserved node ahead of its reserver either leaves it what
    it needs or ends by the time the reserver could start."""
    node = busy_node(held=held, ends_at=NOW + ends_in * HOUR)
    head = make_job("head", 8)
    later = [
        limited(make_job(f"j{number}", gpus), hours) for number, (gpus, hours) in enumerate(jobs)
    ]
    plan = plan_of([node], [head, *later])
    placed = {p.job_id for p in plan.placements}
    assert "head" not in placed
    shadow = NOW + ends_in * HOUR
    by_id = {job.id: job for job in later}
    for job_id in placed:
        job = by_id[job_id]
        assert job.time_limit_us > 0
        assert NOW + job.time_limit_us <= shadow


def held_until(
    name: str, ends_in_hours: list[float | None], *, cpus_each: float = 0.0
) -> NodeState:
    """8 GPUs; GPU i held by its own running job ending ``ends_in_hours[i]`` hours from
    now (None: free), each holding ``cpus_each`` CPUs of the node's 64."""
    gpus = tuple(
        GpuState(index, "A100-80GB", 80 * GIB, () if hours is None else (f"{name}-r{index}",))
        for index, hours in enumerate(ends_in_hours)
    )
    releases = tuple(
        Release(f"{name}-r{index}", NOW + int(hours * HOUR), cpus_each, 0)
        for index, hours in enumerate(ends_in_hours)
        if hours is not None
    )
    running = sum(1 for hours in ends_in_hours if hours is not None)
    cpus_free = 64 - running * cpus_each
    return NodeState(name, gpus, 64, cpus_free, 512 * GIB, 512 * GIB, releases=releases)


def test_among_equally_close_nodes_the_reservation_takes_the_one_that_drains_first() -> None:
    # No GPU is free anywhere: node-a's jobs end in 10 h, node-b's in 1 h. The
    # 8-GPU job starts soonest on node-b.
    node_a = held_until("node-a", [10] * 8)
    node_b = held_until("node-b", [1] * 8)
    plan = plan_of([node_a, node_b], [make_job("head", 8)])
    assert [(r.job_id, r.nodes, r.start_us) for r in plan.reservations] == [
        ("head", ("node-b",), NOW + HOUR)
    ]


def test_a_node_closer_to_fitting_is_reserved_even_if_it_frees_later() -> None:
    # node-a has 6 GPUs free now but its last 2 are busy for 10 h; node-b has none
    # free, all in 1 h. The reserver holds node-a (the least room kept idle for it)
    # and starts in 10 h; jobs ending by then backfill there, node-b stays open.
    node_a = held_until("node-a", [10, 10, None, None, None, None, None, None])
    node_b = held_until("node-b", [1] * 8)
    jobs = [make_job("head", 8), limited(make_job("short", 2), 5)]
    plan = plan_of([node_a, node_b], jobs)
    assert [(r.nodes, r.start_us) for r in plan.reservations] == [(("node-a",), NOW + 10 * HOUR)]
    assert {p.job_id: p.assignments[0].node for p in plan.placements} == {"short": "node-a"}


def test_a_later_job_may_take_what_the_reserver_will_not_need_at_its_start() -> None:
    # 4 GPUs free now, 4 more in 2 h: the 6-GPU head starts then with 2 to spare,
    # which a 5-hour job may hold now; a second one may not.
    node = held_until("n1", [2, 2, 2, 2, None, None, None, None])
    jobs = [
        make_job("head", 6),
        limited(make_job("first", 2), 5),
        limited(make_job("second", 1), 5),
    ]
    plan = plan_of([node], jobs)
    assert plan.reservations[0].start_us == NOW + 2 * HOUR
    assert [p.job_id for p in plan.placements] == ["first"]
    assert {w.job_id for w in plan.waiting} == {"head", "second"}


def test_spare_cpus_at_the_start_go_to_later_jobs_too() -> None:
    # The head asks 1 GPU and 40 CPUs; 8 CPUs are free now, and 56 once every
    # running job ends in 1 h: a 3-hour job of 1 GPU and 10 CPUs leaves it 46.
    node = held_until("n1", [1, 1, 1, 1, 1, 1, 1, None], cpus_each=8)
    jobs = [
        make_job("head", 1, cpus=40),
        limited(make_job("fits-beside", 1, cpus=8), 3),
    ]
    plan = plan_of([node], jobs)
    assert plan.reservations[0].start_us == NOW + HOUR
    assert [p.job_id for p in plan.placements] == ["fits-beside"]


def test_a_gang_starts_when_its_last_node_is_ready_and_jobs_may_end_before() -> None:
    # node-a is free; node-b is busy for 3 h: the 2-node gang starts in 3 h, so a
    # 2-hour job may use node-a until then, a 4-hour job may not.
    free = held_until("node-a", [None] * 8)
    busy = held_until("node-b", [3] * 8)
    gang = make_job("gang", 8, nodes=2)
    plan = plan_of(
        [free, busy],
        [gang, limited(make_job("four-hours", 1), 4), limited(make_job("two-hours", 1), 2)],
    )
    assert [(r.nodes, r.start_us) for r in plan.reservations] == [
        (("node-a", "node-b"), NOW + 3 * HOUR)
    ]
    assert [p.job_id for p in plan.placements] == ["two-hours"]


def test_a_gang_node_that_fits_now_is_not_lent_past_the_gang_start() -> None:
    # node-a fits a rank now; a CPU-only job there ends in 5 h. node-b is ready in
    # 3 h. A 4-hour job on node-a would still hold it when the gang could start.
    cpu_job = Release("cpu-job", NOW + 5 * HOUR, 1.0, 0)
    free = dataclasses.replace(held_until("node-a", [None] * 8), cpus_free=63, releases=(cpu_job,))
    busy = held_until("node-b", [3] * 8)
    plan = plan_of([free, busy], [make_job("gang", 8, nodes=2), limited(make_job("j", 1), 4)])
    assert plan.reservations[0].start_us == NOW + 3 * HOUR
    assert plan.placements == ()


@settings(max_examples=300, deadline=None)
@given(
    ends=st.lists(st.none() | st.integers(1, 8), min_size=16, max_size=16),
    cpus_each=st.sampled_from((0.0, 4.0, 8.0)),
    head=st.tuples(st.integers(1, 8), st.sampled_from((0, 8, 24, 48)), st.integers(1, 2)),
    later=st.lists(
        st.tuples(
            st.integers(0, 8), st.sampled_from((0, 4, 16)), st.integers(0, 10), st.integers(1, 2)
        ),
        max_size=10,
    ),
)
def test_what_runs_beside_a_reservation_never_delays_its_start(
    ends: list[int | None],
    cpus_each: float,
    head: tuple[int, int, int],
    later: list[tuple[int, int, int, int]],
) -> None:
    """Two nodes whose GPUs free up at random hours, a head job that does not fit
    now, and later jobs short and long, wide and narrow: the plan keeps every
    invariant, and each reserved node has room for the head at the start."""
    nodes = [
        held_until("node-a", [float(h) if h else None for h in ends[:8]], cpus_each=cpus_each),
        held_until("node-b", [float(h) if h else None for h in ends[8:]], cpus_each=cpus_each),
    ]
    gpus, cpus, ranks = head
    jobs = [make_job("head", gpus, cpus=cpus, nodes=ranks)]
    for number, (job_gpus, job_cpus, hours, job_ranks) in enumerate(later):
        job = make_job(f"j{number}", job_gpus, cpus=job_cpus, nodes=job_ranks)
        jobs.append(limited(job, hours))
    snapshot = ClusterSnapshot(tuple(nodes), tuple(jobs), now_us=NOW)
    plan = schedule(snapshot)
    check_plan(snapshot, DEFAULT_POLICY, plan)
