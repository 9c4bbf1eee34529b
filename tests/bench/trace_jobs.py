"""The Alibaba GPU trace (v2023, "openb") as jobs and nodes for a replay.

Source: ``shared/traces/alibaba-gpu-v2023`` (Weng et al., "Beware of Fragmentation:
Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC
2023). What a replay takes from it, and what it has to make up:

- Jobs: the pods of ``openb_pod_list_default.csv`` that ran (``scheduled_time`` set;
  the 897 never scheduled have no run time) and arrived in the trace's busy period
  (from day 115 on: 7,228 pods over 35 days; the 35 before it are long-lived pods
  spread over 114 days). Arrival is ``creation_time``, run time is ``deletion_time -
  scheduled_time``, capped (``max_hours``; pods still running when the trace ends
  have a cut run time anyway).
- GPUs: whole ones. A pod asking a fraction of one GPU (``gpu_milli < 1000``) asks a
  whole GPU here: Murmur's GPU sharing has no fractions.
- Gangs: the trace has no multi-node jobs. Pods created in the same second with the
  same asks are taken as the ranks of one job (one rank per node, all or none); it
  runs as long as its longest pod.
- Users and groups: the trace names neither. A pod's shape (CPUs, memory, GPUs, GPU
  fraction) stands for its user (pods from one template, one submitter), and the
  user's group is ``crc32(user) % groups``: deterministic, and it keeps every
  user's jobs in one group.
- Nodes: the trace's 8-GPU nodes (``openb_node_list_gpu_node.csv``), sampled with a
  seed; their CPUs and memory are the trace's.
- Job count: a seeded sample of the jobs (``sample_jobs``), or, for more jobs than
  the trace has, the trace laid end to end in sampled copies: a replay needs many
  jobs per GPU, or its arrivals span less than the longest run times and the
  cluster never reaches a steady state.
- Arrivals: compressed so that the offered load (GPU-seconds asked over GPU-seconds
  the cluster has while jobs arrive) is ``load``; the original cluster was far
  larger than the sampled ones.
"""

from __future__ import annotations

import csv
import os
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

MIB = 2**20
US = 1_000_000
"""Microseconds in a second."""

TRACE_DIR = Path(
    os.environ.get(
        "MURMUR_TRACE_DIR",
        Path(__file__).resolve().parents[3] / "shared" / "traces" / "alibaba-gpu-v2023",
    )
)
PODS_FILE = "openb_pod_list_default.csv"
NODES_FILE = "openb_node_list_gpu_node.csv"

BUSY_FROM_S = 115 * 86_400
"""The trace's busy period starts on day 115; earlier pods are long-lived services."""

GPUS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of the replay; resources are per rank, as in ``scheduler.JobRequest``.

    Attributes:
        id: the pod's name (a gang: its first pod's name and ``xN``).
        order: arrival rank, 0 first; the submit order.
        arrival_us: virtual microseconds from the first arrival (integers: times
            add up exactly).
        duration_us: how long it runs once started, virtual microseconds.
        gpus: whole GPUs per rank.
        cpu_milli: thousandths of a CPU per rank (integers: sums stay exact).
        memory_bytes: memory per rank.
        nodes: ranks, each on its own node.
        user: who submitted it (derived, see the module docstring).
        group: the user's group (derived).
    """

    id: str
    order: int
    arrival_us: int
    duration_us: int
    gpus: int
    cpu_milli: int
    memory_bytes: int
    nodes: int
    user: str
    group: str

    @property
    def cpus(self) -> float:
        """CPUs per rank."""
        return self.cpu_milli / 1000

    @property
    def gpu_ranks(self) -> int:
        """GPUs the whole job holds while it runs."""
        return self.gpus * self.nodes


@dataclass(frozen=True, slots=True)
class TraceNode:
    """One node of the replayed cluster."""

    name: str
    model: str
    gpus: int
    cpu_milli: int
    memory_bytes: int

    @property
    def cpus(self) -> float:
        """CPUs the node offers."""
        return self.cpu_milli / 1000


@dataclass(frozen=True, slots=True)
class TracePod:
    """A row of the pod list, as read."""

    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    creation: int
    run_time: int


def read_pods(path: Path) -> list[TracePod]:
    """Pods that ran, from a pod list CSV, in file order."""
    with path.open(newline="") as handle:
        return parse_pods(csv.DictReader(handle))


def parse_pods(rows: Iterable[dict[str, str]]) -> list[TracePod]:
    """Pods that ran (``scheduled_time`` set), from rows of the pod list."""
    pods = []
    for row in rows:
        if not row["scheduled_time"]:
            continue
        pods.append(
            TracePod(
                name=row["name"],
                cpu_milli=int(row["cpu_milli"]),
                memory_mib=int(row["memory_mib"]),
                num_gpu=int(row["num_gpu"]),
                gpu_milli=int(row["gpu_milli"]),
                creation=int(row["creation_time"]),
                run_time=int(row["deletion_time"]) - int(row["scheduled_time"]),
            )
        )
    return pods


def read_nodes(path: Path) -> list[TraceNode]:
    """The trace's nodes with ``GPUS_PER_NODE`` GPUs, in file order."""
    nodes = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["gpu"]) != GPUS_PER_NODE:
                continue
            nodes.append(
                TraceNode(
                    name=row["sn"],
                    model=row["model"],
                    gpus=GPUS_PER_NODE,
                    cpu_milli=int(row["cpu_milli"]),
                    memory_bytes=int(row["memory_mib"]) * MIB,
                )
            )
    return nodes


def sample_nodes(nodes: Sequence[TraceNode], count: int, seed: int) -> list[TraceNode]:
    """``count`` of ``nodes``, drawn with ``seed``, in name order."""
    if count > len(nodes):
        raise ValueError(f"{count} nodes asked, the trace has {len(nodes)}")
    return sorted(random.Random(seed).sample(list(nodes), count), key=lambda node: node.name)


def user_of(pod: TracePod) -> str:
    """A pod's derived user: its shape."""
    return f"u{pod.num_gpu}g{pod.gpu_milli}m-{pod.cpu_milli}c-{pod.memory_mib}M"


def group_of(user: str, groups: int) -> str:
    """A user's derived group: crc32 of the name, modulo ``groups``."""
    return f"group-{zlib.crc32(user.encode()) % groups:02d}"


def jobs_of(
    pods: Sequence[TracePod],
    *,
    max_seconds: float,
    groups: int = 12,
    busy_from: int = BUSY_FROM_S,
) -> list[TraceJob]:
    """The trace's jobs, in arrival order, with trace times (from the first arrival).

    Pods created in the same second with the same asks become one gang (see the
    module docstring). Arrivals are not compressed yet (``scaled_to_load``).
    """
    ranks: dict[tuple[int, int, int, int, int], list[TracePod]] = {}
    for pod in pods:
        if pod.creation < busy_from:
            continue
        key = (pod.creation, pod.num_gpu, pod.gpu_milli, pod.cpu_milli, pod.memory_mib)
        ranks.setdefault(key, []).append(pod)
    ordered = sorted(ranks.values(), key=lambda members: (members[0].creation, members[0].name))
    if not ordered:
        return []
    first = ordered[0][0].creation
    jobs = []
    for order, members in enumerate(ordered):
        pod = members[0]
        user = user_of(pod)
        jobs.append(
            TraceJob(
                id=pod.name if len(members) == 1 else f"{pod.name}x{len(members)}",
                order=order,
                arrival_us=(pod.creation - first) * US,
                duration_us=round(min(max_seconds, max(1, max(m.run_time for m in members))) * US),
                gpus=pod.num_gpu,
                cpu_milli=pod.cpu_milli,
                memory_bytes=pod.memory_mib * MIB,
                nodes=len(members),
                user=user,
                group=group_of(user, groups),
            )
        )
    return jobs


def sample_jobs(jobs: Sequence[TraceJob], count: int, seed: int) -> list[TraceJob]:
    """``count`` of ``jobs``, drawn with ``seed``, in arrival order and renumbered.

    More than there are: the trace is laid end to end in copies (copy k arrives
    after copy k-1, one mean gap later; its ids end in ``#k``; same users), each
    copy a seeded sample of equal size.
    """
    if not jobs or count <= 0:
        return []
    copies = -(-count // len(jobs))
    span = jobs[-1].arrival_us - jobs[0].arrival_us
    period = span + span // len(jobs)
    kept: list[TraceJob] = []
    for copy in range(copies):
        size = count // copies + (1 if copy < count % copies else 0)
        indices = sorted(random.Random(seed * 1_000 + copy).sample(range(len(jobs)), size))
        for index in indices:
            job = jobs[index]
            kept.append(
                replace(
                    job,
                    id=job.id if copy == 0 else f"{job.id}#{copy}",
                    arrival_us=job.arrival_us + copy * period,
                )
            )
    return [replace(job, order=order) for order, job in enumerate(kept)]


def offered_gpu_time(jobs: Iterable[TraceJob]) -> int:
    """GPU-microseconds the jobs ask for in all."""
    return sum(job.gpu_ranks * job.duration_us for job in jobs)


def scaled_to_load(jobs: Sequence[TraceJob], gpus: int, load: float) -> list[TraceJob]:
    """``jobs`` with arrivals compressed (or stretched) linearly so that the work
    they ask for, over the GPU-seconds ``gpus`` GPUs offer between the first and the
    last arrival, is ``load``. Run times are unchanged."""
    if not jobs:
        return []
    first, last = jobs[0].arrival_us, jobs[-1].arrival_us
    if last <= first:
        return [replace(job, arrival_us=0) for job in jobs]
    window = offered_gpu_time(jobs) / (gpus * load)
    factor = window / (last - first)
    return [replace(job, arrival_us=round((job.arrival_us - first) * factor)) for job in jobs]


def fits_empty(job: TraceJob, nodes: Sequence[TraceNode]) -> bool:
    """Whether ``job`` could run on the cluster when nothing else runs."""
    hosts = sum(
        1
        for node in nodes
        if job.gpus <= node.gpus
        and job.cpu_milli <= node.cpu_milli
        and job.memory_bytes <= node.memory_bytes
    )
    return hosts >= job.nodes
