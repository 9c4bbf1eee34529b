"""Hypothesis strategies: small random clusters with random holders, random pending jobs,
and the same on a clock (running jobs' time limits, pending jobs' time limits)."""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from murmur.scheduler import (
    DEFAULT_POLICY,
    FIFO_FIRST_FIT_POLICY,
    ClusterSnapshot,
    DatasetLocality,
    DefaultRequest,
    GpuState,
    JobRequest,
    NodeState,
    Policy,
    Release,
)

GIB = 2**30
HOUR = 3_600_000_000
NOW = 1_000 * HOUR
MODELS = ("A100-80GB", "H100-80GB", "T4")
DATASETS = ("imagenet", "coco", "wiki")
POLICIES = (
    DEFAULT_POLICY,
    FIFO_FIRST_FIT_POLICY,
    Policy(dataset_locality=DatasetLocality.REQUIRE),
    Policy(reserve_for_blocked_jobs=False),
    Policy(default_request=DefaultRequest(cpus=1, memory_bytes=2 * GIB)),
    Policy(
        dataset_locality=DatasetLocality.REQUIRE,
        default_request=DefaultRequest(cpus=4, memory_bytes=16 * GIB),
    ),
)


@st.composite
def gpu_states(draw: st.DrawFn, index: int, model: str) -> GpuState:
    kind = draw(st.sampled_from(("free", "free", "exclusive", "shared")))
    if kind == "free":
        return GpuState(index, model, 80 * GIB)
    if kind == "exclusive":
        return GpuState(index, model, 80 * GIB, (f"run-{draw(st.integers(0, 99))}",))
    holders = tuple(f"share-{n}" for n in range(draw(st.integers(1, 3))))
    return GpuState(index, model, 80 * GIB, holders, shared=True)


@st.composite
def node_states(draw: st.DrawFn, name: str) -> NodeState:
    count = draw(st.integers(0, 8))
    mixed = draw(st.booleans())
    first = draw(st.sampled_from(MODELS))
    gpus = tuple(
        draw(gpu_states(index, draw(st.sampled_from(MODELS)) if mixed else first))
        for index in range(count)
    )
    cpus_total = draw(st.sampled_from((0, 4, 16, 64)))
    cpus_free = draw(st.sampled_from((0.0, 0.5, 0.25, 1.0))) * cpus_total
    memory_total = draw(st.sampled_from((0, 16, 64, 256))) * GIB
    memory_free = draw(st.sampled_from((0, 1, 2, 4))) * memory_total // 4
    schedulable = draw(st.integers(0, 9)) > 0
    return NodeState(
        name=name,
        gpus=gpus,
        cpus_total=cpus_total,
        cpus_free=cpus_free,
        memory_total_bytes=memory_total,
        memory_free_bytes=memory_free,
        datasets=frozenset(draw(st.sets(st.sampled_from(DATASETS)))),
        schedulable=schedulable,
        unschedulable_reason="" if schedulable else draw(st.sampled_from(("", "draining"))),
    )


@st.composite
def job_requests(draw: st.DrawFn, job_id: str, submit_order: int) -> JobRequest:
    return JobRequest(
        id=job_id,
        user="ada",
        queue=draw(st.sampled_from(("default", "vision"))),
        priority=draw(st.integers(0, 2)),
        submit_order=submit_order,
        gpus=draw(st.sampled_from((0, 1, 1, 1, 2, 2, 4, 8, 9))),
        gpu_model=draw(st.sampled_from(("", "", "a100", "H100", "t4", "V100"))),
        gpu_share=draw(st.integers(0, 3)) == 0,
        cpus=draw(st.sampled_from((0, 0, 1, 2.5, 8, 32))),
        memory_bytes=draw(st.sampled_from((0, 0, 1, 8, 64))) * GIB,
        datasets=tuple(draw(st.lists(st.sampled_from((*DATASETS, "nowhere")), max_size=2))),
        nodes=draw(st.sampled_from((1, 1, 1, 2, 3))),
    )


@st.composite
def snapshots(draw: st.DrawFn, max_nodes: int = 5, max_jobs: int = 12) -> ClusterSnapshot:
    node_count = draw(st.integers(0, max_nodes))
    nodes = tuple(draw(node_states(f"node-{n}")) for n in range(node_count))
    job_count = draw(st.integers(0, max_jobs))
    orders = draw(st.permutations(range(job_count)))
    pending = tuple(draw(job_requests(f"job-{n}", orders[n])) for n in range(job_count))
    return ClusterSnapshot(nodes, pending)


policies = st.sampled_from(POLICIES)


@st.composite
def timed_snapshots(draw: st.DrawFn, max_nodes: int = 5, max_jobs: int = 12) -> ClusterSnapshot:
    """``snapshots`` at ``NOW``, where most running jobs (GPU holders, and CPU-only
    jobs) give their node's resources back at a time limit (``Release``; some are
    already past it) and most pending jobs have a time limit: what backfill and
    reservation starts work from."""
    snapshot = draw(snapshots(max_nodes, max_jobs))
    half_hours = st.integers(-2, 16).map(lambda count: NOW + count * HOUR // 2)
    nodes = []
    for node in snapshot.nodes:
        running = sorted({holder for gpu in node.gpus for holder in gpu.holders})
        running += draw(st.lists(st.sampled_from(("cpu-a", "cpu-b")), unique=True, max_size=2))
        releases = tuple(
            Release(
                holder,
                draw(half_hours),
                draw(st.sampled_from((0.0, 1.0, 4.0, 16.0))),
                draw(st.sampled_from((0, 1, 16))) * GIB,
            )
            for holder in running
            if draw(st.integers(0, 4)) > 0  # one in five has no time limit
        )
        nodes.append(dataclasses.replace(node, releases=releases))
    limits = st.sampled_from((0, HOUR // 2, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR))
    pending = tuple(
        dataclasses.replace(job, time_limit_us=draw(limits)) for job in snapshot.pending
    )
    return ClusterSnapshot(tuple(nodes), pending, now_us=NOW)
