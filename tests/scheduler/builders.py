"""Short constructors for scheduler tests: nodes, jobs and snapshots with sane defaults."""

from __future__ import annotations

from collections.abc import Iterable

from murmur.scheduler import ClusterSnapshot, GpuState, JobRequest, NodeState

GIB = 2**30


def make_node(
    name: str,
    gpus: int = 8,
    *,
    model: str = "A100-80GB",
    busy: Iterable[int] = (),
    shared: Iterable[int] = (),
    cpus: float = 64,
    cpus_free: float | None = None,
    memory_gib: int = 512,
    memory_free_gib: int | None = None,
    datasets: Iterable[str] = (),
    schedulable: bool = True,
    reason: str = "",
    spread: dict[str, int] | None = None,
) -> NodeState:
    """A node of ``gpus`` identical GPUs; ``busy`` ones held exclusively, ``shared`` by sharers."""
    busy_set, shared_set = set(busy), set(shared)
    states = []
    for index in range(gpus):
        if index in busy_set:
            states.append(GpuState(index, model, 80 * GIB, (f"run-{name}-{index}",)))
        elif index in shared_set:
            states.append(GpuState(index, model, 80 * GIB, (f"share-{name}-{index}",), True))
        else:
            states.append(GpuState(index, model, 80 * GIB))
    return NodeState(
        name=name,
        gpus=tuple(states),
        cpus_total=cpus,
        cpus_free=cpus if cpus_free is None else cpus_free,
        memory_total_bytes=memory_gib * GIB,
        memory_free_bytes=(memory_gib if memory_free_gib is None else memory_free_gib) * GIB,
        datasets=frozenset(datasets),
        schedulable=schedulable,
        unschedulable_reason=reason,
        spread=spread or {},
    )


_submitted = 0


def make_job(
    job_id: str,
    gpus: int = 1,
    *,
    queue: str = "default",
    priority: int = 0,
    submit_order: int | None = None,
    model: str = "",
    share: bool = False,
    cpus: float = 0,
    memory_gib: float = 0,
    datasets: Iterable[str] = (),
    nodes: int = 1,
    spread: str = "",
    previous_node: str = "",
) -> JobRequest:
    """A pending job; ``submit_order`` defaults to the order of calls."""
    global _submitted
    _submitted += 1
    return JobRequest(
        id=job_id,
        user="ada",
        queue=queue,
        priority=priority,
        submit_order=_submitted if submit_order is None else submit_order,
        gpus=gpus,
        gpu_model=model,
        gpu_share=share,
        cpus=cpus,
        memory_bytes=int(memory_gib * GIB),
        datasets=tuple(datasets),
        nodes=nodes,
        spread=spread,
        previous_node=previous_node,
    )


def make_snapshot(nodes: Iterable[NodeState], jobs: Iterable[JobRequest]) -> ClusterSnapshot:
    return ClusterSnapshot(tuple(nodes), tuple(jobs))
