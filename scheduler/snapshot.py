"""What the scheduler sees: a frozen picture of nodes and pending jobs.

The node's job manager (one node) or the elected leader (many nodes) builds a
``ClusterSnapshot`` from state it owns and hands it to ``schedule``; nothing here
knows where the numbers came from. Values are validated when built, so a plan is
never computed from a cluster that cannot exist (negative free memory, two GPUs
with one index, two jobs with one id).

Resources of a ``JobRequest`` are per rank: a job with ``nodes=2, gpus=4`` needs
4 GPUs, ``cpus`` and ``memory_bytes`` on each of two distinct nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from murmur.scheduler.errors import (
    DuplicateJobError,
    DuplicateNodeError,
    InvalidGpuStateError,
    InvalidJobRequestError,
    InvalidNodeStateError,
)

_EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})
_EMPTY_COUNTS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU of a node, and who holds it right now.

    Attributes:
        index: the device index on its node (as NVML numbers it).
        model: the model name, e.g. ``"A100-80GB"``; job constraints match it as a
            case-insensitive substring.
        memory_bytes: device memory; 0 when unknown.
        holders: ids of the jobs using the GPU; empty when it is free.
        shared: True when every holder asked to share (``gpu_share``); another
            sharing job may then join them. Ignored while ``holders`` is empty.
        nvlink_group: names the GPUs of the node joined to this one by NVLink (the
            same value on each); None when it is in no such group or nobody knows.
        pcie_group: likewise, the GPUs under the same PCIe switch. A rank's GPUs
            are chosen inside one group when they can be (``ranking.choose_indices``).
    """

    index: int
    model: str
    memory_bytes: int = 0
    holders: tuple[str, ...] = ()
    shared: bool = False
    nvlink_group: int | None = None
    pcie_group: int | None = None

    def __post_init__(self) -> None:
        if self.index < 0:
            raise InvalidGpuStateError(self.index, "index is negative")
        if self.memory_bytes < 0:
            raise InvalidGpuStateError(self.index, "memory_bytes is negative")
        if not isinstance(self.holders, tuple):
            object.__setattr__(self, "holders", tuple(self.holders))


@dataclass(frozen=True, slots=True)
class Release:
    """A running job's resources on one node, given back at its time limit's end.

    Attributes:
        job_id: the running job (its id is among its GPUs' ``holders``).
        end_us: when its time limit ends (microseconds, the snapshot's clock).
        cpus: the CPUs it holds there.
        memory_bytes: the memory it holds there.
    """

    job_id: str
    end_us: int
    cpus: float = 0.0
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node: its GPUs, free CPU and memory, datasets, and whether it takes jobs.

    Attributes:
        name: the node's unique name; plans refer to nodes by it.
        gpus: every GPU of the node, free or not, with distinct indices.
        cpus_total: CPUs the node offers to jobs.
        cpus_free: CPUs not yet promised to a job (0 <= free <= total).
        memory_total_bytes: memory the node offers to jobs.
        memory_free_bytes: memory not yet promised to a job (0 <= free <= total).
        datasets: names of the datasets on the node's disks.
        schedulable: False while draining, cordoned or otherwise closed to new jobs.
        unschedulable_reason: a word or two users see, e.g. ``"draining"``.
        labels: free-form key/value facts about the node (read-only copy).
        releases: what the node's running jobs with a time limit give back, and when
            (their time limit's end): backfill (``scheduler.reservation``) lets a job
            use a reserved node only if it ends before the reserver could start.
            A running job without a time limit is not here: it never ends, as far as
            planning knows.
        spread: how many jobs of each spread group (``JobRequest.spread``) the node
            runs now.
    """

    name: str
    gpus: tuple[GpuState, ...]
    cpus_total: float
    cpus_free: float
    memory_total_bytes: int
    memory_free_bytes: int
    datasets: frozenset[str] = frozenset()
    schedulable: bool = True
    unschedulable_reason: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY_LABELS, hash=False)
    releases: tuple[Release, ...] = ()
    spread: Mapping[str, int] = field(default_factory=lambda: _EMPTY_COUNTS, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidNodeStateError(self.name, "name is empty")
        if not isinstance(self.releases, tuple):
            object.__setattr__(self, "releases", tuple(self.releases))
        if not isinstance(self.gpus, tuple):
            object.__setattr__(self, "gpus", tuple(self.gpus))
        if not isinstance(self.datasets, frozenset):
            object.__setattr__(self, "datasets", frozenset(self.datasets))
        if not isinstance(self.labels, MappingProxyType):
            object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        cpus_free = _checked_free(self.name, "cpus", self.cpus_total, self.cpus_free)
        if cpus_free != self.cpus_free:
            object.__setattr__(self, "cpus_free", cpus_free)
        _checked_free(self.name, "memory", self.memory_total_bytes, self.memory_free_bytes)
        indices = [gpu.index for gpu in self.gpus]
        if len(set(indices)) != len(indices):
            raise InvalidNodeStateError(self.name, f"GPU indices repeat: {sorted(indices)}")


FLOAT_SLACK = 1e-9
"""Free CPUs are sums of floats: a hair outside [0, total] is rounding, clamped."""


def _checked_free(node: str, what: str, total: float, free: float) -> float:
    """``free``, clamped into [0, total] when off by rounding only; else an error."""
    if not (math.isfinite(total) and math.isfinite(free)):
        raise InvalidNodeStateError(node, f"{what} total and free must be finite numbers")
    if total < 0 or free < -FLOAT_SLACK:
        raise InvalidNodeStateError(node, f"{what} total ({total}) and free ({free}) must be >= 0")
    if free > total + FLOAT_SLACK:
        raise InvalidNodeStateError(node, f"{what} free ({free}) exceeds total ({total})")
    return min(max(free, 0), total)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a pending job asks of the cluster; resources are per rank.

    Attributes:
        id: the job's unique id.
        user: who submitted it.
        queue: the queue it waits in; positions in ``Waiting`` count within it.
        priority: higher goes first.
        submit_order: a sequence number from submission, lower is earlier; breaks
            ties between equal priorities.
        submit_rank: the job's place among those of one submission (which share
            their ``submit_order``): an array task's index, so an array's tasks go
            in index order (``ID[2]`` before ``ID[10]``, which their ids would not).
        gpus: GPUs per rank; 0 for a CPU-only job.
        gpu_model: a case-insensitive substring of ``GpuState.model`` every GPU must
            match (``"a100"`` matches ``"A100-80GB"``); empty means any model.
            Ignored when ``gpus`` is 0.
        gpu_share: the job may share GPUs with other sharing jobs.
        cpus: CPUs per rank.
        memory_bytes: memory per rank.
        datasets: names of datasets the job mounts (read-only) on every rank.
        nodes: ranks; more than one is a gang: every rank on its own node, all
            placed in one plan or none.
        time_limit_us: how long the job may run (0: no limit); a job with one may
            run on a reserved node if it ends before the reserver could start.
        spread: a group whose jobs would rather not share a node (a service's
            replicas carry its name): ranking puts the nodes running fewer of the
            group's jobs first, so one node's loss takes as few of them as it can.
            Empty: none.
        previous_node: a node the job would rather run on again, all else equal
            but its spread (a service replica restarting after a crash: its image
            and model weights are warm in that node's caches). Empty: none.
    """

    id: str
    user: str
    queue: str
    priority: int
    submit_order: int
    gpus: int
    submit_rank: int = 0
    gpu_model: str = ""
    gpu_share: bool = False
    cpus: float = 0
    memory_bytes: int = 0
    datasets: tuple[str, ...] = ()
    nodes: int = 1
    time_limit_us: int = 0
    spread: str = ""
    previous_node: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidJobRequestError(self.id, "id is empty")
        if not isinstance(self.datasets, tuple):
            object.__setattr__(self, "datasets", tuple(self.datasets))
        if self.gpus < 0:
            raise InvalidJobRequestError(self.id, f"gpus is {self.gpus}, must be >= 0")
        if not math.isfinite(self.cpus) or self.cpus < 0:
            raise InvalidJobRequestError(self.id, f"cpus is {self.cpus}, must be >= 0")
        if self.memory_bytes < 0:
            raise InvalidJobRequestError(
                self.id, f"memory_bytes is {self.memory_bytes}, must be >= 0"
            )
        if self.nodes < 1:
            raise InvalidJobRequestError(self.id, f"nodes is {self.nodes}, must be >= 1")
        if self.time_limit_us < 0:
            raise InvalidJobRequestError(
                self.id, f"time_limit_us is {self.time_limit_us}, must be >= 0"
            )


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Every node and every pending job at one moment.

    Attributes:
        nodes: all known nodes, schedulable or not, with unique names.
        pending: every job waiting for placement, with unique ids, in any order
            (the policy's queue order decides who goes first).
        now_us: the time of the snapshot, on the clock of the nodes' ``releases``.
    """

    nodes: tuple[NodeState, ...]
    pending: tuple[JobRequest, ...]
    now_us: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.nodes, tuple):
            object.__setattr__(self, "nodes", tuple(self.nodes))
        if not isinstance(self.pending, tuple):
            object.__setattr__(self, "pending", tuple(self.pending))
        first_duplicate_node = _first_duplicate(node.name for node in self.nodes)
        if first_duplicate_node is not None:
            raise DuplicateNodeError(first_duplicate_node)
        first_duplicate_job = _first_duplicate(job.id for job in self.pending)
        if first_duplicate_job is not None:
            raise DuplicateJobError(first_duplicate_job)


def _first_duplicate(names: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None
