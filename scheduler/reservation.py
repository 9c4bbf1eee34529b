"""Room held for a blocked job, so that later jobs cannot starve it; backfill.

The rule, applied within each plan:

- The first job of each queue (in queue order) that does not fit now, but could
  fit on enough schedulable nodes once running jobs finish, reserves nodes: as
  many as it has ranks, among nodes not already reserved in this plan, those
  closest to fitting it now (see ``closeness``: the fewest GPUs, CPUs and memory
  still to come free, so the least room is held idle for it) and, among equally
  close ones, those where it could start soonest (see ``rooms_to_reserve``: a
  node's *shadow time* is when one rank could start there as running jobs' time
  limits end, from the snapshot's ``releases``). On a busy cluster most nodes
  are equally far from fitting a wide job (none has a GPU free), and the one
  that drains first is taken. The reservation's start is the latest shadow
  time of its nodes (a gang starts when its last node is ready; now on a node
  where a rank fits now), unknown when one of them is (a job it waits for has
  no time limit). At most one reservation per queue.
- On a reserved node, every job the queue order puts after the reserver, of any
  queue, may only be placed if it leaves the reserver what it needs:
  - with the start unknown, for each of usable GPUs, free CPUs and free memory,
    at least the smaller of what one rank of the reserver asks and what was free
    when it reserved. In practice a reserved node drains until the reserver fits;
    jobs that take only what it cannot use (other GPU models, spare CPUs) still
    go there;
  - with the start known, what the node will have free at the start (free now,
    plus what running jobs give back by then) less what the later jobs placed
    there still hold then must cover one rank of the reserver. So a job may take
    GPUs, CPUs or memory that the reserver will not need even once it starts
    (EASY's "extra" resources), and never what it will. This admits everything
    the first rule admits, and more.
- Jobs the order puts before the reserver are not affected.
- Backfill (EASY): a later job with a time limit that ends by the reservation's
  start may use its nodes whatever it takes: it is gone before the reserver could
  start. A job without a time limit never does, nor does any job while the start
  is unknown.

Why it does not starve: the first blocked job in queue order is never held back
by another reservation, and nothing after it takes what it needs from its nodes
(by the start, when known), so its nodes only get closer to fitting it as
running jobs end. Only jobs ahead of it in the order (higher priority) can delay
it, which is what priority means. Reservations are not remembered between plans:
every plan recomputes them from the snapshot; a reserved node only gets closer
to fitting its reserver, so it stays reserved from one plan to the next unless
another node gets closer (jobs there ended, early or on time).

Compared with blocking every node the head of line could use, this idles at most
one node per rank of one job per queue.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import check_room_free
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
    start_us: int | None = None
    """When the reserver could start on these nodes, from running jobs' time limits
    (``ClusterSnapshot.now_us``'s clock); None when that is not known."""


class NodeHold:
    """What a reserver needs kept on one node; asks later jobs to leave it."""

    __slots__ = (
        "ask",
        "cpus_floor",
        "gpus_at_start",
        "gpus_floor",
        "job",
        "memory_floor",
        "order",
        "shadow_us",
        "spare_cpus",
        "spare_memory",
    )

    def __init__(
        self, job: JobRequest, order: int, ask: Ask, room: NodeRoom, start_us: int | None = None
    ) -> None:
        """``start_us``: the reservation's start (None: not known)."""
        self.job = job
        self.order = order
        self.ask = ask
        self.gpus_floor = min(ask.gpus, room.usable_count(ask))
        self.cpus_floor = min(ask.cpus, room.cpus_free)
        self.memory_floor = min(ask.memory_bytes, room.memory_free)
        self.shadow_us = start_us
        """When the reserver could start (on every node of the reservation); None:
        not known."""
        self.gpus_at_start: set[int] = set()
        """With the start known: the GPUs the reserver could use then, less those
        later jobs placed here will still hold."""
        self.spare_cpus = 0.0
        self.spare_memory = 0
        if start_us is not None:
            gpus, cpus, memory = free_at(room, ask, start_us)
            self.gpus_at_start = gpus
            self.spare_cpus = cpus - ask.cpus
            self.spare_memory = memory - ask.memory_bytes

    def lets_backfill(self, time_limit_us: int, now_us: int) -> bool:
        """Whether a job of ``time_limit_us`` placed at ``now_us`` ends by the time
        the reserver could start here."""
        return (
            self.shadow_us is not None
            and time_limit_us > 0
            and now_us + time_limit_us <= self.shadow_us
        )

    def spares(self, room: NodeRoom, other: Ask, other_gpus: tuple[int, ...]) -> bool:
        """Whether placing a rank of ``other`` on ``other_gpus`` leaves the reserver
        what it needs: its floor now when the start is unknown, a rank at the start
        when it is known."""
        if self.shadow_us is not None:
            return (
                other.cpus <= self.spare_cpus + CPU_EPSILON
                and other.memory_bytes <= self.spare_memory
                and len(self.gpus_at_start) - self._lost_at_start(other, other_gpus)
                >= self.ask.gpus
            )
        if room.cpus_free - other.cpus + CPU_EPSILON < self.cpus_floor:
            return False
        if room.memory_free - other.memory_bytes < self.memory_floor:
            return False
        if not other_gpus or not self.ask.gpus:
            return True
        return room.usable_count(self.ask) - self._gpus_lost(room, other, other_gpus) >= (
            self.gpus_floor
        )

    def take(self, other: Ask, other_gpus: tuple[int, ...]) -> None:
        """Counts a rank of ``other``, placed here on ``other_gpus``, that will still
        run at the start."""
        if self.shadow_us is None:
            return
        if self._lost_at_start(other, other_gpus):
            self.gpus_at_start.difference_update(other_gpus)
        self.spare_cpus -= other.cpus
        self.spare_memory -= other.memory_bytes

    def _lost_at_start(self, other: Ask, other_gpus: tuple[int, ...]) -> int:
        """How many GPUs the reserver could use at the start ``other`` would hold then."""
        if not other_gpus or not self.ask.gpus or (self.ask.share and other.share):
            return 0  # a sharing reserver can still use GPUs a sharing job holds
        return sum(1 for index in other_gpus if index in self.gpus_at_start)

    def _gpus_lost(self, room: NodeRoom, other: Ask, other_gpus: tuple[int, ...]) -> int:
        """How many GPUs usable by the reserver now ``other`` would make unusable to it."""
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
    job ends. Only the moments jobs end are considered: a rank that fits now gets
    the first of them (``rooms_to_reserve`` says now for those).
    """
    releases = sorted(room.state.releases, key=lambda release: (release.end_us, release.job_id))
    if not releases:
        return None
    usable_now, later = _gpus_coming_free(room, ask)
    free_times = sorted(at for at, _ in later)
    cpus, memory = room.cpus_free, room.memory_free
    for position, release in enumerate(releases):
        cpus += release.cpus
        memory += release.memory_bytes
        if position + 1 < len(releases) and releases[position + 1].end_us == release.end_us:
            continue  # take every job that ends at this moment first
        moment = release.end_us
        gpus = len(usable_now) + bisect_right(free_times, moment)
        if gpus >= ask.gpus and cpus + CPU_EPSILON >= ask.cpus and memory >= ask.memory_bytes:
            return moment
    return None


def free_at(room: NodeRoom, ask: Ask, moment_us: int) -> tuple[set[int], float, int]:
    """The GPUs usable by ``ask``, the CPUs and the memory ``room`` will have free at
    ``moment_us`` if nothing else is placed there, as running jobs' time limits end."""
    usable_now, later = _gpus_coming_free(room, ask)
    gpus = set(usable_now)
    gpus.update(index for at, index in later if at <= moment_us)
    cpus, memory = room.cpus_free, room.memory_free
    for release in room.state.releases:
        if release.end_us <= moment_us:
            cpus += release.cpus
            memory += release.memory_bytes
    return gpus, cpus, memory


def _gpus_coming_free(room: NodeRoom, ask: Ask) -> tuple[list[int], list[tuple[int, int]]]:
    """The GPUs of ``room`` usable by ``ask`` now, and (when, index) for those that
    will be once every job holding them ends by its time limit."""
    usable_now = room.usable(ask)
    if not room.state.releases:
        return usable_now, []
    ends = {release.job_id: release.end_us for release in room.state.releases}
    matching = room.matching(ask.model_lower) if ask.model_lower else None
    usable = set(usable_now)
    later: list[tuple[int, int]] = []
    for gpu in room.state.gpus:
        if gpu.index in usable or (matching is not None and gpu.index not in matching):
            continue
        if not gpu.holders or gpu.index in room.placed or any(h not in ends for h in gpu.holders):
            continue  # held by this plan, or by a job that never ends as far as we know
        later.append((max(ends[holder] for holder in gpu.holders), gpu.index))
    return usable_now, later


def closeness(room: NodeRoom, ask: Ask, datasets: frozenset[str]) -> tuple[float, ...]:
    """How close ``room`` is to fitting ``ask`` now; smaller is closer.

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


def rooms_to_reserve(
    rooms: Sequence[NodeRoom], ask: Ask, datasets: frozenset[str], count: int, now_us: int
) -> tuple[list[NodeRoom], int | None]:
    """The ``count`` rooms to reserve for ``ask``, and when it could start on them.

    Rooms rank by ``closeness`` now: data locality, then the GPU, CPU and memory
    shortfalls; among equally close rooms, by shadow time (now where a rank fits
    now; unknown last); then by the rest of ``closeness`` (best fit), then by name.
    The start is the latest shadow time of the rooms chosen; None when one of them
    is unknown, or when fewer than ``count`` rooms are given (they cannot take
    every rank).
    """
    near = sorted((closeness(room, ask, datasets), room.name, room) for room in rooms)
    if not near:
        return [], None
    # Only rooms as close as the count-th closest can be chosen: time them alone.
    cutoff = near[min(count, len(near)) - 1][0][:4]
    keyed = []
    for score, name, room in near:
        if score[:4] > cutoff:
            break
        shadow = now_us if check_room_free(room, ask) is None else shadow_time(room, ask)
        if shadow is not None and shadow < now_us:
            shadow = now_us  # a job past its time limit that has not ended yet
        keyed.append(((score[:4], shadow is None, shadow or 0, score[4:], name), shadow, room))
    keyed.sort(key=lambda entry: entry[0])
    chosen = keyed[:count]
    known = [shadow for _, shadow, _ in chosen if shadow is not None]
    start = max(known) if len(known) == count else None
    return [room for _, _, room in chosen], start
