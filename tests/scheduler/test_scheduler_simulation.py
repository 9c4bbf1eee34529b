"""Many plans in a row: schedule, start what was placed, finish jobs at random, repeat.

Each step's snapshot is built from what earlier plans started, so a plan that
double-booked a GPU or over-committed CPUs shows up as a broken invariant or as a
snapshot that cannot be built (negative free memory is refused).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import (
    DEFAULT_POLICY,
    FIFO_FIRST_FIT_POLICY,
    ClusterSnapshot,
    DefaultRequest,
    GpuState,
    JobRequest,
    NodeState,
    Plan,
    Policy,
    schedule,
)
from tests.scheduler.builders import GIB, make_job
from tests.scheduler.invariants import check_plan
from tests.scheduler.strategies import POLICIES


@dataclass
class SimulatedNode:
    name: str
    models: tuple[str, ...]
    cpus: float
    memory: int
    datasets: frozenset[str]
    holders: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)
    cpus_used: float = 0.0
    memory_used: int = 0

    def state(self) -> NodeState:
        gpus = tuple(
            GpuState(
                index,
                model,
                80 * GIB,
                tuple(job for job, _ in self.holders.get(index, [])),
                shared=all(share for _, share in self.holders.get(index, [])),
            )
            for index, model in enumerate(self.models)
        )
        return NodeState(
            self.name,
            gpus,
            self.cpus,
            max(0.0, self.cpus - self.cpus_used),
            self.memory,
            self.memory - self.memory_used,
            self.datasets,
        )


@dataclass
class SimulatedCluster:
    nodes: dict[str, SimulatedNode]
    pending: dict[str, JobRequest] = field(default_factory=dict)
    running: dict[str, tuple[JobRequest, list[tuple[str, tuple[int, ...]]]]] = field(
        default_factory=dict
    )
    default_request: DefaultRequest = field(default_factory=DefaultRequest)
    """What a running job that names no CPUs or memory holds (as the leader counts it)."""

    def held(self, job: JobRequest) -> tuple[float, int]:
        default = self.default_request
        return job.cpus or default.cpus, job.memory_bytes or default.memory_bytes

    def snapshot(self) -> ClusterSnapshot:
        return ClusterSnapshot(
            tuple(node.state() for node in self.nodes.values()), tuple(self.pending.values())
        )

    def start(self, plan: Plan) -> None:
        for placement in plan.placements:
            job = self.pending.pop(placement.job_id)
            ranks = []
            for assignment in placement.assignments:
                node = self.nodes[assignment.node]
                for index in assignment.gpu_indices:
                    node.holders.setdefault(index, []).append((job.id, job.gpu_share))
                cpus, memory = self.held(job)
                node.cpus_used += cpus
                node.memory_used += memory
                ranks.append((assignment.node, assignment.gpu_indices))
            self.running[job.id] = (job, ranks)

    def finish(self, job_id: str) -> None:
        job, ranks = self.running.pop(job_id)
        for name, gpu_indices in ranks:
            node = self.nodes[name]
            for index in gpu_indices:
                node.holders[index] = [h for h in node.holders[index] if h[0] != job_id]
            cpus, memory = self.held(job)
            node.cpus_used -= cpus
            node.memory_used -= memory

    def check_holders(self) -> None:
        """Invariant 4 of the product: a GPU is never given to two jobs unless all share."""
        for node in self.nodes.values():
            for index, holders in node.holders.items():
                assert len(holders) <= 1 or all(share for _, share in holders), (node.name, index)


def random_cluster(rng: random.Random) -> SimulatedCluster:
    nodes = {}
    for n in range(rng.randint(1, 4)):
        model = rng.choice(("A100-80GB", "H100-80GB"))
        nodes[f"node-{n}"] = SimulatedNode(
            name=f"node-{n}",
            models=(model,) * rng.choice((2, 4, 8)),
            cpus=rng.choice((16, 64)),
            memory=rng.choice((128, 512)) * GIB,
            datasets=frozenset(rng.sample(("imagenet", "coco"), rng.randint(0, 1))),
        )
    return SimulatedCluster(nodes)


def random_job(rng: random.Random, number: int) -> JobRequest:
    return make_job(
        f"job-{number}",
        rng.choice((0, 1, 1, 2, 4, 8)),
        queue=rng.choice(("default", "vision")),
        priority=rng.randint(0, 2),
        submit_order=number,
        model=rng.choice(("", "", "a100", "h100")),
        share=rng.random() < 0.2,
        cpus=rng.choice((0, 2, 8)),
        memory_gib=rng.choice((0, 16, 64)),
        datasets=rng.sample(("imagenet", "coco"), rng.randint(0, 1)),
        nodes=rng.choice((1, 1, 1, 2)),
    )


def could_ever_run(cluster: SimulatedCluster, job: JobRequest, policy: Policy) -> bool:
    """Whether the job fits the cluster with nothing running (so it must run one day)."""
    empty = SimulatedCluster(
        {
            name: SimulatedNode(n.name, n.models, n.cpus, n.memory, n.datasets)
            for name, n in cluster.nodes.items()
        },
        {job.id: job},
    )
    return bool(schedule(empty.snapshot(), policy=policy).placements)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(POLICIES))
def test_invariants_hold_over_many_plans_and_every_runnable_job_runs(
    seed: int, policy: Policy
) -> None:
    rng = random.Random(seed)
    cluster = random_cluster(rng)
    cluster.default_request = policy.default_request
    submitted = 0
    for step in range(200):
        if step < 40:
            for _ in range(rng.randint(0, 3)):
                job = random_job(rng, submitted)
                submitted += 1
                cluster.pending[job.id] = job
        snapshot = cluster.snapshot()
        plan = schedule(snapshot, policy=policy)
        check_plan(snapshot, policy, plan)
        cluster.start(plan)
        cluster.check_holders()
        if step >= 40 and not cluster.running:
            break  # This plan saw an idle cluster and placed nothing: a fixed point.
        for job_id in list(cluster.running):
            if rng.random() < 0.3:
                cluster.finish(job_id)
    never = [job for job in cluster.pending.values() if could_ever_run(cluster, job, policy)]
    assert never == [], f"runnable jobs never started: {[job.id for job in never]}"


def test_a_big_job_is_not_starved_by_a_stream_of_small_ones() -> None:
    """8 one-GPU jobs hold a node; a new one-GPU job arrives whenever one finishes.
    With reservations the 8-GPU job runs once the node drains; without, never."""

    def run(policy: Policy) -> int | None:
        cluster = SimulatedCluster(
            {"node-1": SimulatedNode("node-1", ("A100",) * 8, 64, 512 * GIB, frozenset())}
        )
        for n in range(8):
            cluster.pending[f"small-{n}"] = make_job(f"small-{n}", 1, submit_order=n)
        cluster.start(schedule(cluster.snapshot(), policy=policy))
        cluster.pending["big"] = make_job("big", 8, submit_order=100)
        arrivals = 200
        for step in range(50):
            oldest = min(cluster.running, key=lambda i: cluster.running[i][0].submit_order)
            cluster.finish(oldest)
            cluster.pending[f"small-{arrivals}"] = make_job(
                f"small-{arrivals}", 1, submit_order=arrivals
            )
            arrivals += 1
            plan = schedule(cluster.snapshot(), policy=policy)
            cluster.start(plan)
            if "big" in cluster.running:
                return step
        return None

    assert run(DEFAULT_POLICY) == 7
    assert run(Policy(reserve_for_blocked_jobs=False)) is None
    assert run(FIFO_FIRST_FIT_POLICY) is None
