"""A discrete-event replay of trace jobs on a simulated cluster, in virtual time.

Events are arrivals and completions, nothing else; no clock is read and nothing
sleeps. At each event time the replay applies every completion, then every arrival,
then asks the scheduler under test for a pass (``ReplayScheduler.schedule``), which
starts jobs through ``Replay.start``. A start is checked before it is applied (the
GPUs free, enough CPUs and memory, one rank per node, as many ranks as the job has),
so no scheduler can over-allocate unnoticed: a bad start raises ``ReplayError``. A
started job ends exactly ``duration_us`` later. Times are integer microseconds, so
they add up exactly.

Between events the state is constant, so the time-weighted figures (``ReplayTally``)
are sums over the intervals between events:

- GPUs allocated over the arrival window (first to last arrival);
- saturation: the instants when waiting jobs (that fit the cluster at all) ask for
  at least as many GPUs as are free, i.e. the queue holds the work to fill every
  GPU; allocation is also measured over those instants only, over the whole
  replay and over those in the arrival window (the steady state: after the last
  arrival no new work comes to use what the last, often wide, jobs cannot), and
  the GPUs left free then are sorted by the node they sit on, into three kinds
  (nodes are checked against the waiting jobs' per-rank asks, not against the
  replay's mix): *kept free*, where a rank of some waiting job fits now (so a
  scheduler chose not to start it there: a reservation holds the node, or a gang
  lacks enough such nodes); *CPU or memory*, where some waiting job fits by GPU
  count but none by CPUs or memory too; *too few GPUs*, where every waiting job
  asks more GPUs per rank than the node has free;
- fragmentation: over the instants when a GPU job waits and some GPU is free, the
  expected fraction of the free GPUs that a job drawn from the replay's own GPU job
  mix (by count; one rank of it, for gangs) could not use because the node they sit
  on cannot take it now (too few free GPUs, CPUs or memory there). As in Weng et
  al.'s measure, it asks "could a typical job use this hole", not "could the job at
  the head": a scheduler that backfills leaves free only what no waiting job fits,
  so a head-of-queue measure reads near 100% for any of them;
- per group, GPU time held during the arrival window (fair shares).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tests.bench.trace_jobs import TraceJob, TraceNode, fits_empty


class ReplayError(AssertionError):
    """A scheduler started a job where it does not fit, or one that is not waiting."""


@dataclass(frozen=True, slots=True)
class RankStart:
    """Where one rank of a started job runs: a node (by position) and its GPUs."""

    node: int
    gpu_indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A job that ran: when, and where."""

    job: TraceJob
    start: int
    end: int
    ranks: tuple[RankStart, ...]


class SimNode:
    """One node's GPUs (who holds each), free CPUs and free memory."""

    __slots__ = (
        "cpu_milli_free",
        "cpu_milli_total",
        "free_gpus",
        "gpu_count",
        "holders",
        "index",
        "memory_free",
        "memory_total",
        "model",
        "name",
    )

    def __init__(self, index: int, node: TraceNode) -> None:
        self.index = index
        self.name = node.name
        self.model = node.model
        self.gpu_count = node.gpus
        self.cpu_milli_total = node.cpu_milli
        self.memory_total = node.memory_bytes
        self.holders: list[str | None] = [None] * node.gpus
        self.free_gpus = node.gpus
        self.cpu_milli_free = node.cpu_milli
        self.memory_free = node.memory_bytes

    def fits(self, job: TraceJob) -> bool:
        """Whether one rank of ``job`` fits here now."""
        return (
            job.gpus <= self.free_gpus
            and job.cpu_milli <= self.cpu_milli_free
            and job.memory_bytes <= self.memory_free
        )

    def lowest_free_gpus(self, count: int) -> tuple[int, ...]:
        """The ``count`` lowest-numbered free GPUs (there must be as many)."""
        found: list[int] = []
        for index, holder in enumerate(self.holders):
            if len(found) == count:
                break
            if holder is None:
                found.append(index)
        return tuple(found)


@dataclass(slots=True)
class Running:
    """A job running now."""

    job: TraceJob
    start: int
    end: int
    ranks: tuple[RankStart, ...]


@dataclass(slots=True)
class Changes:
    """What changed since the scheduler's previous pass."""

    arrived: list[TraceJob] = field(default_factory=list)
    ended: int = 0
    nodes: set[int] = field(default_factory=set)


@dataclass(slots=True)
class ReplayTally:
    """Time-weighted sums over the replay (see the module docstring); GPU-microseconds
    and microseconds."""

    window_end: int = 0
    allocated_in_window: float = 0.0
    saturated_time: float = 0.0
    allocated_saturated: float = 0.0
    idle_saturated_kept: float = 0.0
    idle_saturated_cpu_memory: float = 0.0
    idle_saturated_too_few_gpus: float = 0.0
    saturated_in_window: float = 0.0
    allocated_saturated_in_window: float = 0.0
    idle_saturated_in_window: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Free GPU time while saturated in the window: kept, CPU or memory, too few GPUs."""
    fragmentation_time: float = 0.0
    fragmented: float = 0.0
    group_gpu_time: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class ReplayResult:
    """Everything a replay produced."""

    scheduler: str
    nodes: tuple[TraceNode, ...]
    jobs: tuple[TraceJob, ...]
    runs: list[RunRecord]
    never_ran: list[TraceJob]
    unfit: frozenset[str]
    """Ids of the jobs that could not run even on the empty cluster."""
    tally: ReplayTally
    end_time: int
    wall_seconds: float
    passes: int

    @property
    def gpus(self) -> int:
        return sum(node.gpus for node in self.nodes)


class ReplayScheduler(Protocol):
    """A policy under test: starts what it decides to at each event time."""

    name: str

    def schedule(self, replay: Replay) -> None:
        """One pass: call ``replay.start`` for each job to start now."""


_END = 0
_ARRIVAL = 1


class Replay:
    """One replay of ``jobs`` on ``nodes`` under one scheduler (``run``)."""

    def __init__(self, nodes: Sequence[TraceNode], jobs: Sequence[TraceJob]) -> None:
        self.trace_nodes = tuple(nodes)
        self.jobs = tuple(sorted(jobs, key=lambda job: (job.arrival_us, job.order)))
        self.nodes = [SimNode(index, node) for index, node in enumerate(nodes)]
        self.now = 0
        self.pending: dict[str, TraceJob] = {}
        """Waiting jobs, in arrival order."""
        self.running: dict[str, Running] = {}
        self.runs: list[RunRecord] = []
        self.total_gpus = sum(node.gpus for node in nodes)
        self.free_gpus = self.total_gpus
        self._fits_cluster = {job.id: fits_empty(job, self.trace_nodes) for job in self.jobs}
        self._changes = Changes()
        self._events: list[tuple[int, int, int, str]] = []
        self._sequence = 0
        self._waiting_gpu_jobs: dict[str, TraceJob] = {}
        """Waiting jobs that ask for GPUs and fit the cluster, in arrival order."""
        self._waiting_gpus = 0
        self._waiting_shapes: dict[tuple[int, int, int], int] = {}
        """Per-rank asks (GPUs, CPU thousandths, memory) of ``_waiting_gpu_jobs``, counted."""
        self._least_shapes: list[tuple[int, int, int]] | None = []
        """The waiting asks no other waiting ask is below in all three (None: stale)."""
        self._idle_kinds = (0, 0, 0)
        """Free GPUs now: kept free, short of CPUs or memory, too few (module doc)."""
        self._group_gpus: dict[str, int] = {job.group: 0 for job in self.jobs}
        self._fragmentation: float | None = None
        self._shapes = _shape_mix(job for job in self.jobs if job.gpus and self.fits_cluster(job))
        self._unusable = [0.0] * len(self.nodes)
        """Per node: the share of the job mix that cannot go there now."""
        self._unusable_stale: set[int] = set(range(len(self.nodes)))
        self.tally = ReplayTally(
            window_end=self.jobs[-1].arrival_us if self.jobs else 0,
            group_gpu_time=dict.fromkeys(self._group_gpus, 0.0),
        )

    def fits_cluster(self, job: TraceJob) -> bool:
        """Whether ``job`` could run here at all (on the empty cluster)."""
        return self._fits_cluster[job.id]

    def take_changes(self) -> Changes:
        """What changed since the last call (arrivals, ends, nodes touched)."""
        changes, self._changes = self._changes, Changes()
        return changes

    def start(self, job: TraceJob, ranks: Sequence[RankStart]) -> None:
        """Starts waiting ``job`` now with one rank per entry of ``ranks``.

        Raises:
            ReplayError: the job is not waiting, or a rank does not fit its node.
        """
        if job.id not in self.pending:
            raise ReplayError(f"{job.id} is not waiting")
        if len(ranks) != job.nodes:
            raise ReplayError(f"{job.id} has {job.nodes} ranks, {len(ranks)} started")
        if len({rank.node for rank in ranks}) != len(ranks):
            raise ReplayError(f"{job.id}: two ranks on one node")
        for rank in ranks:
            node = self.nodes[rank.node]
            indices = rank.gpu_indices
            if len(indices) != job.gpus or len(set(indices)) != len(indices):
                raise ReplayError(f"{job.id} asks {job.gpus} GPUs, got {indices} on {node.name}")
            for index in indices:
                if not 0 <= index < node.gpu_count or node.holders[index] is not None:
                    raise ReplayError(f"{job.id}: GPU {index} of {node.name} is not free")
            if job.cpu_milli > node.cpu_milli_free or job.memory_bytes > node.memory_free:
                raise ReplayError(f"{job.id}: not enough CPUs or memory on {node.name}")
        for rank in ranks:
            node = self.nodes[rank.node]
            for index in rank.gpu_indices:
                node.holders[index] = job.id
            node.free_gpus -= job.gpus
            node.cpu_milli_free -= job.cpu_milli
            node.memory_free -= job.memory_bytes
            self._changes.nodes.add(rank.node)
            self._unusable_stale.add(rank.node)
        del self.pending[job.id]
        if self._waiting_gpu_jobs.pop(job.id, None) is not None:
            self._waiting_gpus -= job.gpu_ranks
            self._forget_shape(job)
        self.free_gpus -= job.gpu_ranks
        self._group_gpus[job.group] += job.gpu_ranks
        end = self.now + job.duration_us
        self.running[job.id] = Running(job, self.now, end, tuple(ranks))
        self._push(end, _END, job.id)

    def _end(self, job_id: str) -> None:
        running = self.running.pop(job_id)
        job = running.job
        for rank in running.ranks:
            node = self.nodes[rank.node]
            for index in rank.gpu_indices:
                node.holders[index] = None
            node.free_gpus += job.gpus
            node.cpu_milli_free += job.cpu_milli
            node.memory_free += job.memory_bytes
            self._changes.nodes.add(rank.node)
            self._unusable_stale.add(rank.node)
        self.free_gpus += job.gpu_ranks
        self._group_gpus[job.group] -= job.gpu_ranks
        self._changes.ended += 1
        self.runs.append(RunRecord(job, running.start, running.end, running.ranks))

    def _arrive(self, job: TraceJob) -> None:
        self.pending[job.id] = job
        self._changes.arrived.append(job)
        if job.gpus > 0 and self.fits_cluster(job):
            self._waiting_gpu_jobs[job.id] = job
            self._waiting_gpus += job.gpu_ranks
            shape = (job.gpus, job.cpu_milli, job.memory_bytes)
            count = self._waiting_shapes.get(shape, 0)
            self._waiting_shapes[shape] = count + 1
            if not count:
                self._least_shapes = None

    def _forget_shape(self, job: TraceJob) -> None:
        shape = (job.gpus, job.cpu_milli, job.memory_bytes)
        count = self._waiting_shapes.pop(shape) - 1
        if count:
            self._waiting_shapes[shape] = count
        else:
            self._least_shapes = None

    def _push(self, at: int, kind: int, job_id: str) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (at, kind, self._sequence, job_id))

    def _advance(self, to: int) -> None:
        """Adds the interval from ``now`` to ``to`` (constant state) to the tally."""
        span = to - self.now
        if span <= 0:
            return
        tally = self.tally
        allocated = self.total_gpus - self.free_gpus
        in_window = min(to, tally.window_end) - self.now
        if in_window > 0:
            tally.allocated_in_window += allocated * in_window
            for group, gpus in self._group_gpus.items():
                if gpus:
                    tally.group_gpu_time[group] += gpus * in_window
        if self._waiting_gpus and self._waiting_gpus >= self.free_gpus:
            tally.saturated_time += span
            tally.allocated_saturated += allocated * span
            kept, cpu_memory, too_few = self._idle_kinds
            tally.idle_saturated_kept += kept * span
            tally.idle_saturated_cpu_memory += cpu_memory * span
            tally.idle_saturated_too_few_gpus += too_few * span
            if in_window > 0:
                tally.saturated_in_window += in_window
                tally.allocated_saturated_in_window += allocated * in_window
                kept_sum, cpu_memory_sum, too_few_sum = tally.idle_saturated_in_window
                tally.idle_saturated_in_window = (
                    kept_sum + kept * in_window,
                    cpu_memory_sum + cpu_memory * in_window,
                    too_few_sum + too_few * in_window,
                )
        if self._fragmentation is not None:
            tally.fragmentation_time += span
            tally.fragmented += self._fragmentation * span
        self.now = to

    def _measure_fragmentation(self) -> None:
        """Fragmentation now (None when no GPU job waits or no GPU is free)."""
        self._fragmentation = None
        if not self.free_gpus or not self._waiting_gpu_jobs:
            return
        unusable = self._unusable
        for index in self._unusable_stale:
            node = self.nodes[index]
            unusable[index] = sum(
                weight
                for gpus, cpu_milli, memory, weight in self._shapes
                if gpus > node.free_gpus
                or cpu_milli > node.cpu_milli_free
                or memory > node.memory_free
            )
        self._unusable_stale.clear()
        stranded = sum(
            unusable[node.index] * node.free_gpus for node in self.nodes if node.free_gpus
        )
        self._fragmentation = stranded / self.free_gpus

    def _measure_idle(self) -> None:
        """Sorts the free GPUs now into ``_idle_kinds``, when the replay is saturated."""
        self._idle_kinds = (0, 0, 0)
        if not self._waiting_gpus or self._waiting_gpus < self.free_gpus or not self.free_gpus:
            return
        least = self._least_shapes
        if least is None:
            least = self._least_shapes = _least(self._waiting_shapes)
        fewest_gpus = min(gpus for gpus, _, _ in least)
        kept = cpu_memory = too_few = 0
        for node in self.nodes:
            free = node.free_gpus
            if not free:
                continue
            if free < fewest_gpus:
                too_few += free
            elif any(
                gpus <= free and cpu_milli <= node.cpu_milli_free and memory <= node.memory_free
                for gpus, cpu_milli, memory in least
            ):
                kept += free
            else:
                cpu_memory += free
        self._idle_kinds = (kept, cpu_memory, too_few)

    def run(self, scheduler: ReplayScheduler) -> ReplayResult:
        """Replays every job under ``scheduler`` until no event is left."""
        started = time.perf_counter()
        by_id = {job.id: job for job in self.jobs}
        for job in self.jobs:
            self._push(job.arrival_us, _ARRIVAL, job.id)
        passes = 0
        events = self._events
        while events:
            at = events[0][0]
            self._advance(at)
            while events and events[0][0] == at:
                _, kind, _, job_id = heapq.heappop(events)
                if kind == _END:
                    self._end(job_id)
                else:
                    self._arrive(by_id[job_id])
            if self.pending:
                scheduler.schedule(self)
                passes += 1
            self._measure_fragmentation()
            self._measure_idle()
        return ReplayResult(
            scheduler=scheduler.name,
            nodes=self.trace_nodes,
            jobs=self.jobs,
            runs=self.runs,
            never_ran=list(self.pending.values()),
            unfit=frozenset(job_id for job_id, fits in self._fits_cluster.items() if not fits),
            tally=self.tally,
            end_time=self.now,
            wall_seconds=time.perf_counter() - started,
            passes=passes,
        )


def _shape_mix(jobs: Iterable[TraceJob]) -> list[tuple[int, int, int, float]]:
    """Distinct per-rank asks (GPUs, CPU thousandths, memory) with their share of ``jobs``."""
    counts: dict[tuple[int, int, int], int] = {}
    for job in jobs:
        shape = (job.gpus, job.cpu_milli, job.memory_bytes)
        counts[shape] = counts.get(shape, 0) + 1
    total = sum(counts.values())
    return [(*shape, count / total) for shape, count in sorted(counts.items())]


def _least(shapes: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The shapes no other shape is at or below in all three (one of equal ones).

    A node fits some shape of ``shapes`` exactly when it fits one of these."""
    least: list[tuple[int, int, int]] = []
    for shape in sorted(shapes):
        if not any(
            other[0] <= shape[0] and other[1] <= shape[1] and other[2] <= shape[2]
            for other in least
        ):
            least.append(shape)
    return least


def replay(
    nodes: Sequence[TraceNode], jobs: Sequence[TraceJob], scheduler: ReplayScheduler
) -> ReplayResult:
    """Replays ``jobs`` on ``nodes`` under ``scheduler`` (a fresh cluster)."""
    return Replay(nodes, jobs).run(scheduler)
