"""Scheduler throughput and decision latency: 200 nodes x 8 GPUs, 10,000 pending jobs.

Run with ``python -m tests.bench.bench_scheduler [--quick]``. It measures the pure
``scheduler.schedule`` (no I/O) against the targets in the brief:

- placement throughput: decisions/s over a whole plan (target >= 2,000/s);
- decision latency: each decision timed inside a plan with ``PlanBuilder``, and a
  whole ``schedule()`` of one job that fits on every node, so all 200 nodes are
  scored (target p99 <= 5 ms);

with the FIFO first-fit baseline (``FIFO_FIRST_FIT_POLICY``: arrival order, first
node that fits, no reservations) in the same run. Workloads are seeded, so runs
compare. Scenarios:

- empty: every GPU free at the start;
- half busy: about half of the GPUs already held by running jobs;
- distinct shapes: half busy, and no two jobs ask for exactly the same resources,
  which defeats the planner's "this shape already failed" memo: the worst case,
  where every blocked job is checked against every node.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass

from murmur.scheduler import (
    DEFAULT_POLICY,
    FIFO_FIRST_FIT_POLICY,
    ClusterSnapshot,
    DatasetLocality,
    GpuState,
    JobRequest,
    NodeState,
    Plan,
    PlanBuilder,
    Policy,
    schedule,
)

GIB = 2**30
NODES = 200
GPUS_PER_NODE = 8
PENDING = 10_000
NODE_CPUS = 128
NODE_MEMORY = 1024 * GIB
MODELS = (("A100-80GB", 120), ("H100-80GB", 50), ("L40S-48GB", 30))
DATASETS = tuple(f"dataset-{n:02d}" for n in range(30))
QUEUES = ("default", "vision", "nlp")


def build_nodes(rng: random.Random, *, busy_fraction: float) -> tuple[NodeState, ...]:
    """200 nodes of 8 GPUs in three models; datasets on 1 to 4 nodes each."""
    models = [model for model, count in MODELS for _ in range(count)]
    names = [f"node-{n:03d}" for n in range(NODES)]
    holding: dict[str, set[str]] = {name: set() for name in names}
    for dataset in DATASETS:
        for name in rng.sample(names, rng.randint(1, 4)):
            holding[name].add(dataset)
    nodes = []
    running = 0
    for name, model in zip(names, models, strict=True):
        gpus = []
        held = 0
        for index in range(GPUS_PER_NODE):
            holders: tuple[str, ...] = ()
            if rng.random() < busy_fraction:
                running += 1
                holders = (f"running-{running}",)
                held += 1
            gpus.append(GpuState(index, model, 80 * GIB, holders))
        nodes.append(
            NodeState(
                name=name,
                gpus=tuple(gpus),
                cpus_total=NODE_CPUS,
                cpus_free=NODE_CPUS - 8 * held,
                memory_total_bytes=NODE_MEMORY,
                memory_free_bytes=NODE_MEMORY - 64 * GIB * held,
                datasets=frozenset(holding[name]),
            )
        )
    return tuple(nodes)


def build_pending(
    rng: random.Random, count: int, *, distinct_shapes: bool
) -> tuple[JobRequest, ...]:
    """A mix of 1/2/4/8-GPU jobs; some pinned to a model, some bound to a dataset,
    some sharing, a few 2-node gangs; three queues, four priorities."""
    jobs = []
    for n in range(count):
        gpus = rng.choices((1, 2, 4, 8), weights=(45, 25, 15, 15))[0]
        nodes = 2 if gpus == 8 and rng.random() < 0.1 else 1
        model = rng.choices(("", "A100", "H100", "L40S"), weights=(70, 15, 10, 5))[0]
        datasets = (rng.choice(DATASETS),) if rng.random() < 0.3 else ()
        cpus_per_gpu = rng.choice((4, 8))
        memory = rng.choice((32, 64)) * GIB * gpus
        if distinct_shapes:
            memory += n  # a few bytes more: the same job to a human, a new shape to the memo
        jobs.append(
            JobRequest(
                id=f"job-{n:05d}",
                user=f"user-{rng.randrange(20)}",
                queue=rng.choice(QUEUES),
                priority=rng.choices((0, 1, 2, 3), weights=(70, 15, 10, 5))[0],
                submit_order=n,
                gpus=gpus,
                gpu_model=model,
                gpu_share=gpus == 1 and rng.random() < 0.05,
                cpus=cpus_per_gpu * gpus,
                memory_bytes=memory,
                datasets=datasets,
                nodes=nodes,
            )
        )
    return tuple(jobs)


@dataclass(frozen=True)
class Scenario:
    name: str
    busy_fraction: float
    distinct_shapes: bool


SCENARIOS = (
    Scenario("empty", 0.0, False),
    Scenario("half busy", 0.5, False),
    Scenario("distinct shapes, half busy", 0.5, True),
)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed_schedule(snapshot: ClusterSnapshot, policy: Policy) -> tuple[float, Plan]:
    """One whole ``schedule()``, timed after a collection so earlier garbage is not billed."""
    gc.collect()
    start = time.perf_counter()
    plan = schedule(snapshot, policy=policy)
    return time.perf_counter() - start, plan


def decision_latencies(snapshot: ClusterSnapshot, policy: Policy) -> list[float]:
    """Each ``decide_next`` of one plan, timed alone."""
    builder = PlanBuilder(snapshot, policy=policy)
    samples = []
    clock = time.perf_counter
    while True:
        start = clock()
        decided = builder.decide_next()
        samples.append(clock() - start)
        if decided is None:
            return samples[:-1]


@dataclass(frozen=True)
class Quality:
    placed: int
    gpus_allocated: float
    dataset_local: float
    reserved_nodes: int


def plan_quality(snapshot: ClusterSnapshot, plan: Plan) -> Quality:
    """What the plan achieved: GPU allocation, data locality, nodes held for blocked jobs."""
    jobs = {job.id: job for job in snapshot.pending}
    nodes = {node.name: node for node in snapshot.nodes}
    taken: dict[str, set[int]] = {name: set() for name in nodes}
    bound = local = 0
    for placement in plan.placements:
        job = jobs[placement.job_id]
        for assignment in placement.assignments:
            taken[assignment.node].update(assignment.gpu_indices)
            if job.datasets:
                bound += 1
                local += set(job.datasets) <= nodes[assignment.node].datasets
    total = used = 0
    for name, node in nodes.items():
        held = {gpu.index for gpu in node.gpus if gpu.holders} | taken[name]
        total += len(node.gpus)
        used += len(held)
    return Quality(
        placed=len(plan.placements),
        gpus_allocated=used / total,
        dataset_local=local / bound if bound else 1.0,
        reserved_nodes=sum(len(r.nodes) for r in plan.reservations),
    )


def single_job_latencies(nodes: tuple[NodeState, ...], runs: int) -> list[float]:
    """``schedule()`` of one 1-GPU job that fits every node: all 200 scored."""
    snapshot = ClusterSnapshot(nodes, (JobRequest("one", "u", "default", 0, 0, gpus=1),))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        schedule(snapshot)
        samples.append(time.perf_counter() - start)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def main() -> None:
    """Run every scenario under both policies and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 repetition, for a smoke run")
    parser.add_argument("--pending", type=int, default=PENDING, help="pending jobs per plan")
    args = parser.parse_args()
    repetitions = 1 if args.quick else 3
    policies = (
        ("murmur (DEFAULT_POLICY)", DEFAULT_POLICY),
        ("murmur, locality required", Policy(dataset_locality=DatasetLocality.REQUIRE)),
        ("FIFO first-fit", FIFO_FIRST_FIT_POLICY),
    )

    print(
        f"# scheduler benchmark: {NODES} nodes x {GPUS_PER_NODE} GPUs, {args.pending} pending "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]})"
    )
    print()
    print(
        "| scenario | policy | plan wall (median) | decisions/s | decision p50 | decision p99 "
        "| decision max | placed | GPUs allocated | dataset-bound ranks local | reserved nodes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    default_rates: list[float] = []
    default_p99s: list[float] = []
    for scenario in SCENARIOS:
        rng = random.Random(f"murmur-bench-{scenario.name}")
        nodes = build_nodes(rng, busy_fraction=scenario.busy_fraction)
        pending = build_pending(rng, args.pending, distinct_shapes=scenario.distinct_shapes)
        snapshot = ClusterSnapshot(nodes, pending)
        for label, policy in policies:
            walls = []
            plan: Plan | None = None
            for _ in range(repetitions):
                wall, plan = timed_schedule(snapshot, policy)
                walls.append(wall)
            assert plan is not None
            latencies = decision_latencies(snapshot, policy)
            wall = statistics.median(walls)
            quality = plan_quality(snapshot, plan)
            if policy is DEFAULT_POLICY:
                default_rates.append(len(pending) / wall)
                default_p99s.append(percentile(latencies, 0.99))
            print(
                f"| {scenario.name} | {label} | {wall:.3f} s | {len(pending) / wall:,.0f} "
                f"| {ms(statistics.median(latencies))} | {ms(percentile(latencies, 0.99))} "
                f"| {ms(max(latencies))} | {quality.placed} | {quality.gpus_allocated:.1%} "
                f"| {quality.dataset_local:.1%} | {quality.reserved_nodes} |"
            )
    print()
    runs = 100 if args.quick else 500
    samples = single_job_latencies(build_nodes(random.Random("single"), busy_fraction=0.0), runs)
    single_p99 = percentile(samples, 0.99)
    print("| target (DEFAULT_POLICY, worst scenario) | measured | target | met |")
    print("| --- | --- | --- | --- |")
    rate = min(default_rates)
    print(
        f"| placement throughput | {rate:,.0f} decisions/s | >= 2,000/s | {verdict(rate >= 2000)} |"
    )
    p99 = max(default_p99s)
    print(
        f"| decision latency p99, inside a plan | {ms(p99)} | <= 5 ms | {verdict(p99 <= 0.005)} |"
    )
    print(
        f"| one decision scoring all 200 nodes, `schedule()` of 1 job incl. working copy "
        f"({runs} runs, p50 {ms(statistics.median(samples))}) | p99 {ms(single_p99)} "
        f"| <= 5 ms | {verdict(single_p99 <= 0.005)} |"
    )


def verdict(met: bool) -> str:
    return "yes" if met else "NO"


if __name__ == "__main__":
    main()
