"""EASY backfill: a job may jump a reservation only if its time limit ends before the
reserver could start; a job without a time limit never does."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import ClusterSnapshot, GpuState, JobRequest, NodeState, Release, schedule
from tests.scheduler.builders import GIB, make_job

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
