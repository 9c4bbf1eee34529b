"""The schedulers a trace replay compares: Murmur's own, and two references.

- ``MurmurScheduler``: Murmur's scheduler, driven as the leader drives it
  (``node/control/leader/placement.py`` and ``planner.py``): each pass builds a
  ``ClusterSnapshot`` whose nodes are their offers minus what running jobs hold
  (GPU holders, CPUs and memory; ``_NodeUse.node_state``) and whose pending jobs are
  ``JobRequest`` values made once per job (``job_request``: user, queue "default",
  priority 0, submit order), and runs a ``PlanBuilder`` under the policy
  (``DEFAULT_POLICY``: reservations for blocked jobs included) over the whole queue.
  Like ``QueuePlanner``, when the last pass placed nothing and only single-node jobs
  arrived since, it decides the new jobs on top of the last builder
  (``PlanBuilder.extend``), which makes the same plan as a fresh one. One
  difference: multi-node jobs go to the scheduler too, which places gangs whole;
  the leader's placement step (as of this writing) keeps them out of the builder
  and waiting ("not placed by the cluster queue yet"). With ``time_limits`` (the
  default in the benchmark: the run time times the same estimate as EASY's), every
  job carries a time limit and every node the ends of its running jobs' limits
  (``NodeState.releases``), as the leader gives them, so Murmur backfills onto
  reserved nodes what ends before the reserver could start.
- ``FifoFirstFit``: strict arrival order; the oldest waiting job starts on the first
  nodes where it fits, and while it does not fit nothing behind it starts.
- ``EasyBackfill``: FIFO plus EASY backfilling. When the oldest waiting job (the
  head) does not fit, it gets a reservation: the earliest time (its *shadow time*)
  at which, as running jobs end at their time limits, enough nodes could take it,
  and the first such nodes. A later job may start now if it ends (by its time
  limit) before the shadow time, or if on each reserved node it uses it leaves the
  head's rank room at the shadow time. Time limits are the jobs' actual run times
  times ``estimate`` (1.0: exact, the strongest reference).

Both references set aside jobs that could never run on the cluster (more than any
node has), as a batch system rejects them at submission; they never block the
queue. Murmur's scheduler gets them like any other job and keeps them waiting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from murmur import scheduler
from tests.bench.trace_jobs import TraceJob
from tests.bench.trace_sim import RankStart, Replay, SimNode

QUEUE = "default"


def first_fit(nodes: Sequence[SimNode], job: TraceJob) -> list[RankStart] | None:
    """One rank of ``job`` on each of the first ``job.nodes`` nodes where it fits,
    on their lowest free GPUs; None when too few fit."""
    chosen: list[RankStart] = []
    for node in nodes:
        if node.fits(job):
            chosen.append(RankStart(node.index, node.lowest_free_gpus(job.gpus)))
            if len(chosen) == job.nodes:
                return chosen
    return None


class MurmurScheduler:
    """Murmur's ``scheduler`` package under a policy, driven as the leader drives it."""

    def __init__(
        self,
        *,
        policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
        name: str = "murmur",
        incremental: bool = True,
        time_limits: float | None = None,
    ) -> None:
        """``incremental``: decide new jobs on top of the last builder when the leader's
        planner would (False: a fresh plan every pass; the plans are the same).
        ``time_limits``: jobs' time limits are their run times times this (None:
        jobs have none, and nothing backfills by time)."""
        self.name = name
        self._policy = policy
        self._incremental = incremental
        self._time_limits = time_limits
        self._requests: dict[str, scheduler.JobRequest] = {}
        self._states: list[scheduler.NodeState] = []
        self._node_index: dict[str, int] = {}
        self._builder: scheduler.PlanBuilder | None = None
        """The last pass's builder, while that pass placed nothing."""
        self.reservations = 0
        """Reservations made, summed over passes (informational)."""

    def schedule(self, replay: Replay) -> None:
        changes = replay.take_changes()
        releases = self._releases(replay) if self._time_limits is not None else {}
        if not self._states:
            self._states = [node_state(node, releases.get(node.index, ())) for node in replay.nodes]
            self._node_index = {node.name: node.index for node in replay.nodes}
        else:
            for index in sorted(changes.nodes):
                self._states[index] = node_state(replay.nodes[index], releases.get(index, ()))
        builder = self._builder
        if (
            self._incremental
            and builder is not None
            and not changes.nodes
            and all(job.nodes == 1 for job in changes.arrived)
            and builder.extend([self._request(job) for job in changes.arrived], replay.now)
        ):
            builder.decide(len(builder.order))
        else:
            snapshot = scheduler.ClusterSnapshot(
                nodes=tuple(self._states),
                pending=tuple(self._request(job) for job in replay.pending.values()),
                now_us=replay.now,
            )
            builder = scheduler.PlanBuilder(snapshot, policy=self._policy)
            builder.decide(len(builder.order))
        # Waiting reasons are words for users; placements do not depend on them.
        plan = builder.plan_with(())
        self._builder = None if plan.placements else builder
        self.reservations += len(plan.reservations)
        for placement in plan.placements:
            job = replay.pending[placement.job_id]
            replay.start(
                job,
                [
                    RankStart(self._node_index[rank.node], rank.gpu_indices)
                    for rank in placement.assignments
                ],
            )
            del self._requests[job.id]

    def _limit(self, job: TraceJob) -> int:
        if self._time_limits is None:
            return 0
        return math.ceil(job.duration_us * self._time_limits)

    def _releases(self, replay: Replay) -> dict[int, list[scheduler.Release]]:
        """Node index -> when its running jobs' time limits end, and what they hold."""
        found: dict[int, list[scheduler.Release]] = {}
        for running in replay.running.values():
            job = running.job
            end = running.start + self._limit(job)
            for rank in running.ranks:
                found.setdefault(rank.node, []).append(
                    scheduler.Release(job.id, end, job.cpus, job.memory_bytes)
                )
        return found

    def _request(self, job: TraceJob) -> scheduler.JobRequest:
        request = self._requests.get(job.id)
        if request is None:
            request = scheduler.JobRequest(
                id=job.id,
                user=job.user,
                queue=QUEUE,
                priority=0,
                submit_order=job.order,
                gpus=job.gpus,
                cpus=job.cpus,
                memory_bytes=job.memory_bytes,
                nodes=job.nodes,
                time_limit_us=self._limit(job),
            )
            self._requests[job.id] = request
        return request


def node_state(node: SimNode, releases: Sequence[scheduler.Release] = ()) -> scheduler.NodeState:
    """``node`` as the leader shows it to the scheduler: its offer less what runs, and
    when its running jobs' time limits end."""
    return scheduler.NodeState(
        name=node.name,
        gpus=tuple(
            scheduler.GpuState(index, node.model, holders=(holder,) if holder else ())
            for index, holder in enumerate(node.holders)
        ),
        cpus_total=node.cpu_milli_total / 1000,
        cpus_free=node.cpu_milli_free / 1000,
        memory_total_bytes=node.memory_total,
        memory_free_bytes=node.memory_free,
        releases=tuple(releases),
    )


class FifoFirstFit:
    """Strict FIFO, first fit: the head of the queue blocks everything behind it."""

    name = "FIFO first-fit"

    def schedule(self, replay: Replay) -> None:
        replay.take_changes()
        for job in list(replay.pending.values()):
            if not replay.fits_cluster(job):
                continue
            ranks = first_fit(replay.nodes, job)
            if ranks is None:
                return
            replay.start(job, ranks)


class _Room:
    """Free resources of one node at the head's shadow time (a projection)."""

    __slots__ = ("cpu_milli", "gpus", "memory")

    def __init__(self, gpus: int, cpu_milli: int, memory: int) -> None:
        self.gpus = gpus
        self.cpu_milli = cpu_milli
        self.memory = memory

    def takes(self, job: TraceJob) -> bool:
        return (
            job.gpus <= self.gpus
            and job.cpu_milli <= self.cpu_milli
            and job.memory_bytes <= self.memory
        )

    def leaves(self, job: TraceJob, head: TraceJob) -> bool:
        """Whether a rank of ``head`` still fits once a rank of ``job`` is taken."""
        return (
            head.gpus + job.gpus <= self.gpus
            and head.cpu_milli + job.cpu_milli <= self.cpu_milli
            and head.memory_bytes + job.memory_bytes <= self.memory
        )

    def take(self, job: TraceJob) -> None:
        self.gpus -= job.gpus
        self.cpu_milli -= job.cpu_milli
        self.memory -= job.memory_bytes


class EasyBackfill:
    """FIFO with EASY backfilling on time limits = run time x ``estimate``."""

    def __init__(self, *, estimate: float = 1.0) -> None:
        if estimate < 1:
            raise ValueError("a time limit below the run time would kill jobs")
        self.estimate = estimate
        self.name = "FIFO + EASY backfill" + ("" if estimate == 1 else f" (limits x{estimate:g})")
        self.promised: dict[str, int] = {}
        """Head job id -> the shadow time of its first reservation."""

    def limit(self, job: TraceJob) -> int:
        """The job's time limit, microseconds."""
        if self.estimate == 1:
            return job.duration_us
        return math.ceil(job.duration_us * self.estimate)

    def schedule(self, replay: Replay) -> None:
        replay.take_changes()
        queue = [job for job in replay.pending.values() if replay.fits_cluster(job)]
        nodes = replay.nodes
        position = 0
        while position < len(queue):
            ranks = first_fit(nodes, queue[position])
            if ranks is None:
                break
            replay.start(queue[position], ranks)
            position += 1
        if position >= len(queue):
            return
        head = queue[position]
        shadow, reserved, rooms = self.reservation(replay, head)
        self.promised.setdefault(head.id, shadow)
        failed: set[tuple[int, int, int, int, bool]] = set()
        for job in queue[position + 1 :]:
            short = replay.now + self.limit(job) <= shadow
            shape = (job.gpus, job.cpu_milli, job.memory_bytes, job.nodes, short)
            if shape in failed:
                continue  # free resources only shrink within a pass
            chosen: list[SimNode] = []
            for node in nodes:
                if not node.fits(job):
                    continue
                if not short and node.index in reserved and not rooms[node.index].leaves(job, head):
                    continue
                chosen.append(node)
                if len(chosen) == job.nodes:
                    break
            if len(chosen) < job.nodes:
                failed.add(shape)
                continue
            if not short:
                for node in chosen:
                    rooms[node.index].take(job)
            replay.start(
                job, [RankStart(node.index, node.lowest_free_gpus(job.gpus)) for node in chosen]
            )

    def reservation(self, replay: Replay, head: TraceJob) -> tuple[int, set[int], list[_Room]]:
        """The head's shadow time, its reserved nodes, and every node's projected free
        resources at that time (running jobs ending by their time limits)."""
        rooms = [
            _Room(node.free_gpus, node.cpu_milli_free, node.memory_free) for node in replay.nodes
        ]
        ends = sorted(
            (running.start + self.limit(running.job), running.job.order, running.job.id)
            for running in replay.running.values()
        )
        shadow = replay.now
        hosts = sum(1 for room in rooms if room.takes(head))
        for end, _, job_id in ends:
            if hosts >= head.nodes and end > shadow:
                break
            shadow = end
            job = replay.running[job_id].job
            for rank in replay.running[job_id].ranks:
                room = rooms[rank.node]
                could = room.takes(head)
                room.gpus += job.gpus
                room.cpu_milli += job.cpu_milli
                room.memory += job.memory_bytes
                if not could and room.takes(head):
                    hosts += 1
        reserved: set[int] = set()
        for index, room in enumerate(rooms):
            if len(reserved) == head.nodes:
                break
            if room.takes(head):
                reserved.add(index)
        return shadow, reserved, rooms
