"""A job that names no CPUs or memory counts as the policy's default request: such
jobs fill a node by what they use, then go to the next, instead of all landing on
one (three nodes, twelve CPU-only jobs: all twelve on one node before)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import (
    NO_DEFAULT_REQUEST,
    ClusterSnapshot,
    DefaultRequest,
    JobRequest,
    Plan,
    Policy,
    schedule,
)
from tests.scheduler.builders import GIB, make_job, make_node

COUNTED = Policy(default_request=DefaultRequest(cpus=1, memory_bytes=2 * GIB))


def per_node(plan: Plan) -> Counter[str]:
    return Counter(p.assignments[0].node for p in plan.placements)


def cpu_only_jobs(count: int) -> tuple[JobRequest, ...]:
    return tuple(make_job(f"j{n:02}", 0, submit_order=n) for n in range(count))


def test_twelve_cpu_only_jobs_spread_over_three_equal_nodes() -> None:
    nodes = tuple(make_node(f"n{i}", 0, cpus=4, memory_gib=16) for i in (1, 2, 3))
    snapshot = ClusterSnapshot(nodes, cpu_only_jobs(12))
    assert per_node(schedule(snapshot, policy=COUNTED)) == {"n1": 4, "n2": 4, "n3": 4}
    # Counted as nothing, they all fit the first node.
    assert per_node(schedule(snapshot, policy=Policy())) == {"n1": 12}


def test_memory_counts_too_and_a_job_that_names_its_own_keeps_it() -> None:
    nodes = tuple(make_node(f"n{i}", 0, cpus=64, memory_gib=4) for i in (1, 2, 3))
    plan = schedule(ClusterSnapshot(nodes, cpu_only_jobs(8)), policy=COUNTED)
    assert per_node(plan) == {"n1": 2, "n2": 2, "n3": 2}  # 2 GiB each on 4 GiB nodes
    (waiting, *_) = plan.waiting
    assert "2 GiB" in waiting.reason, waiting.reason
    # Named amounts are what they are: 0.5 CPU and 1 GiB fit four to a node.
    light = tuple(make_job(f"l{n}", 0, cpus=0.5, memory_gib=1, submit_order=n) for n in range(12))
    assert sum(per_node(schedule(ClusterSnapshot(nodes, light), policy=COUNTED)).values()) == 12


def test_a_waiting_reason_names_the_counted_cpus() -> None:
    node = make_node("n1", 0, cpus=2, memory_gib=64)
    plan = schedule(ClusterSnapshot((node,), cpu_only_jobs(3)), policy=COUNTED)
    assert len(plan.placements) == 2
    (waiting,) = plan.waiting
    assert "1 CPU" in waiting.reason, waiting.reason


def test_a_default_request_is_never_negative_or_infinite() -> None:
    for bad in (
        {"cpus": -1.0},
        {"cpus": float("inf")},
        {"cpus": float("nan")},
        {"memory_bytes": -1},
    ):
        with pytest.raises(ValueError, match="default request"):
            DefaultRequest(**bad)  # type: ignore[arg-type]
    assert DefaultRequest().cpus_of(0) == 0 == NO_DEFAULT_REQUEST.memory_of(0)
    assert COUNTED.default_request.cpus_of(0.25) == 0.25


@settings(max_examples=150, deadline=None)
@given(
    nodes=st.integers(1, 5),
    cpus=st.sampled_from((1, 2, 4, 16)),
    jobs=st.integers(0, 40),
    default_cpus=st.sampled_from((0.5, 1.0, 2.0)),
)
def test_cpu_only_jobs_never_overfill_a_node_and_fill_what_there_is(
    nodes: int, cpus: int, jobs: int, default_cpus: float
) -> None:
    """Jobs that name nothing, on equal nodes with memory to spare: no node takes more
    than its CPUs hold of the default, and as many run as the cluster holds."""
    policy = Policy(default_request=DefaultRequest(cpus=default_cpus, memory_bytes=GIB))
    cluster = tuple(make_node(f"n{i}", 0, cpus=cpus, memory_gib=64) for i in range(nodes))
    plan = schedule(ClusterSnapshot(cluster, cpu_only_jobs(jobs)), policy=policy)
    room = int(cpus // default_cpus)
    counts = per_node(plan)
    assert all(count <= room for count in counts.values()), counts
    assert len(plan.placements) == min(jobs, nodes * room)
