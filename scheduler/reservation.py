"""Room held for a blocked job, so that later jobs cannot starve it; backfill.

The rule, applied within each plan:

- The first job of each queue (in queue order) that does not fit now, but could
  fit on enough schedulable nodes once running jobs finish, reserves nodes: as
  many as it has ranks, those closest to fitting it (see ``closeness``), among
  nodes not already reserved in this plan. At most one reservation per queue.
- On a reserved node, every job the queue order puts after the reserver, of any
  queue, may only be placed if it leaves the reserver what the reserver needs:
  for each of usable GPUs, free CPUs and free memory, at least the smaller of
  what one rank of the reserver asks and what was free when it reserved. In
  practice a reserved node drains until the reserver fits; jobs that take only
  what it cannot use (other GPU models, spare CPUs) still go there.
- Jobs the order puts before the reserver are not affected.
- Backfill (EASY): a reservation knows when the reserver could start on the node
  (its *shadow time*: the earliest end of running jobs' time limits after which
  enough is free, from the snapshot's ``releases``; unknown when a holder it waits
  for has no time limit). A later job with a time limit that ends by then may use
  the node whatever it takes: it is gone before the reserver could start. A job
  without a time limit never does.

Why it does not starve: the first blocked job in queue order is never held back
by another reservation, and nothing after it takes what it needs from its nodes,
so its best node only gets closer to fitting it as running jobs end. Only jobs
ahead of it in the order (higher priority) can delay it, which is what priority
means. Reservations are not remembered between plans: every plan recomputes them
from the snapshot.

Compared with blocking every node the head of line could use, this idles at most
one node per rank of one job per queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from murmur.scheduler.ask import Ask
from murmur.scheduler.ranking import score_room
from murmur.scheduler.room import CPU_EPSILON, NodeRoom
from murmur.scheduler.snapshot import JobRequest


@dataclass(frozen=True, slots=True)
class Reservation:
    """Nodes held for a blocked job in one plan, shown to users and dashboards.

    Attributes:
        job_id: the job the nodes are held for.
        queue: that job's queue.
        nodes: the reserved nodes' names, closest to fitting first.
    """

    job_id: str
    queue: str
    nodes: tuple[str, ...]


class NodeHold:
    """What a reserver needs kept on one node; asks later jobs to leave it."""

    __slots__ = (
        "ask",
        "cpus_floor",
        "gpus_floor",
        "job",
        "memory_floor",
        "order",
        "shadow_us",
    )

    def __init__(self, job: JobRequest, order: int, ask: Ask, room: NodeRoom) -> None:
        self.job = job
        self.order = order
        self.ask = ask
        self.gpus_floor = min(ask.gpus, room.usable_count(ask))
        self.cpus_floor = min(ask.cpus, room.cpus_free)
        self.memory_floor = min(ask.memory_bytes, room.memory_free)
        self.shadow_us = shadow_time(room, ask)
        """When one rank of the reserver could start here; None: not known."""

    def lets_backfill(self, time_limit_us: int, now_us: int) -> bool:
        """Whether a job of ``time_limit_us`` placed at ``now_us`` ends by the time
        the reserver could start here."""
        return (
            self.shadow_us is not None
            and time_limit_us > 0
            and now_us + time_limit_us <= self.shadow_us
        )

    def spares(self, room: NodeRoom, other: Ask, other_gpus: tuple[int, ...]) -> bool:
        """Whether placing a rank of ``other`` on ``other_gpus`` leaves the reserver its floor."""
        if room.cpus_free - other.cpus + CPU_EPSILON < self.cpus_floor:
            return False
        if room.memory_free - other.memory_bytes < self.memory_floor:
            return False
        if not other_gpus or not self.ask.gpus:
            return True
        return room.usable_count(self.ask) - self._gpus_lost(room, other, other_gpus) >= (
            self.gpus_floor
        )

    def _gpus_lost(self, room: NodeRoom, other: Ask, other_gpus: tuple[int, ...]) -> int:
        """How many GPUs usable by the reserver ``other`` would make unusable to it."""
        matching = room.matching(self.ask.model_lower)
        if self.ask.share:
            # A sharing reserver can still use GPUs a sharing job joins.
            return 0 if other.share else sum(1 for index in other_gpus if index in matching)
        free = room.free
        return sum(1 for index in other_gpus if index in matching and index in free)


def shadow_time(room: NodeRoom, ask: Ask) -> int | None:
    """When one rank of ``ask`` could start on ``room``, as its running jobs' time
    limits end (``NodeState.releases``); None when that is not known (what it waits
    for is held by a job without a time limit, or by a job placed in this plan).

    A GPU comes free when every job holding it has ended; CPUs and memory as each
    job ends.
    """
    releases = sorted(room.state.releases, key=lambda release: (release.end_us, release.job_id))
    if not releases:
        return None
    ends = {release.job_id: release.end_us for release in releases}
    matching = room.matching(ask.model_lower) if ask.model_lower else None
    usable_now = set(room.usable(ask))
    free_at: list[int] = []
    for gpu in room.state.gpus:
        if gpu.index in usable_now or (matching is not None and gpu.index not in matching):
            continue
        if not gpu.holders or any(holder not in ends for holder in gpu.holders):
            continue  # held by this plan, or by a job that never ends as far as we know
        free_at.append(max(ends[holder] for holder in gpu.holders))
    free_at.sort()
    cpus, memory = room.cpus_free, room.memory_free
    for position, release in enumerate(releases):
        cpus += release.cpus
        memory += release.memory_bytes
        if position + 1 < len(releases) and releases[position + 1].end_us == release.end_us:
            continue  # take every job that ends at this moment first
        moment = release.end_us
        gpus = len(usable_now) + sum(1 for at in free_at if at <= moment)
        if gpus >= ask.gpus and cpus + CPU_EPSILON >= ask.cpus and memory >= ask.memory_bytes:
            return moment
    return None


def closeness(room: NodeRoom, ask: Ask, datasets: frozenset[str]) -> tuple[float, ...]:
    """How close ``room`` is to fitting ``ask``; smaller is closer.

    Data locality first (as in ranking), then the GPU shortfall, then CPU and memory
    shortfalls, then the ranking's best-fit order.
    """
    score = score_room(room, ask, datasets)
    return (
        score.datasets_missing,
        max(0, ask.gpus - room.usable_count(ask)),
        max(0.0, ask.cpus - room.cpus_free),
        max(0, ask.memory_bytes - room.memory_free),
        score.gpus_left,
        score.cpus_left,
    )


def closest_rooms(
    rooms: Sequence[NodeRoom], ask: Ask, datasets: frozenset[str], count: int
) -> list[NodeRoom]:
    """The ``count`` rooms closest to fitting ``ask`` (ties by name)."""
    ranked = sorted(rooms, key=lambda room: (closeness(room, ask, datasets), room.name))
    return ranked[:count]
