"""An independent model of free resources, to check plans against.

Written from the rules in the scheduler's docstrings, not from its code: what a
node has free after some placements, and whether one rank of a job fits there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from murmur.scheduler import ClusterSnapshot, DatasetLocality, JobRequest, NodeState, Placement

EPSILON = 1e-9


@dataclass
class NodeFree:
    """What is left on one node: per GPU its holders' share flags; CPUs; memory."""

    node: NodeState
    holders: dict[int, list[bool]] = field(default_factory=dict)
    cpus: float = 0.0
    memory: int = 0

    @classmethod
    def of(cls, node: NodeState) -> NodeFree:
        holders = {gpu.index: [gpu.shared] * len(gpu.holders) for gpu in node.gpus}
        return cls(node, holders, node.cpus_free, node.memory_free_bytes)

    def usable(self, job: JobRequest) -> set[int]:
        models = {gpu.index: gpu.model.lower() for gpu in self.node.gpus}
        return {
            index
            for index, shares in self.holders.items()
            if job.gpu_model.strip().lower() in models[index]
            and (not shares or (job.gpu_share and all(shares)))
        }

    def fits(self, job: JobRequest, locality: DatasetLocality) -> bool:
        if not self.node.schedulable:
            return False
        if locality is DatasetLocality.REQUIRE and not set(job.datasets) <= self.node.datasets:
            return False
        if job.gpus and len(self.usable(job)) < job.gpus:
            return False
        return self.cpus + EPSILON >= job.cpus and self.memory >= job.memory_bytes

    def apply(self, job: JobRequest, gpu_indices: Iterable[int]) -> None:
        for index in gpu_indices:
            self.holders[index].append(job.gpu_share)
        self.cpus -= job.cpus
        self.memory -= job.memory_bytes


def free_after(snapshot: ClusterSnapshot, placements: Iterable[Placement]) -> dict[str, NodeFree]:
    """Every node's free resources after ``placements`` are applied to the snapshot."""
    jobs = {job.id: job for job in snapshot.pending}
    free = {node.name: NodeFree.of(node) for node in snapshot.nodes}
    for placement in placements:
        for assignment in placement.assignments:
            free[assignment.node].apply(jobs[placement.job_id], assignment.gpu_indices)
    return free


def all_datasets(snapshot: ClusterSnapshot) -> set[str]:
    return {name for node in snapshot.nodes for name in node.datasets}
