"""The scheduler's one entry point: a snapshot in, a plan out, nothing else touched.

``schedule`` walks the pending jobs in the policy's queue order and, for each,
either places every rank or records why it waits:

1. A job naming a dataset that no node holds waits ("dataset x is on no node").
2. Otherwise each node is checked (``feasibility``) against a working copy of the
   free resources (``room``), so nothing handed out earlier in this plan is handed
   out again. Nodes reserved for an earlier blocked job only take it if it leaves
   the reserver what it needs (``reservation``).
3. Best fit: the feasible nodes are scored (``ranking``) and the best ``nodes`` of
   them take one rank each; rank 0 goes to the best. First fit: the first feasible
   nodes in snapshot order. A gang is placed whole or not at all.
4. A job that does not fit may reserve nodes (``reservation``): the first such job
   of each queue that could run once resources free up.

Starvation rule, exactly (details and the argument in ``scheduler.reservation``):
per queue, the first job in queue order that is blocked but could run on enough
schedulable nodes once running jobs end reserves the ``nodes`` not-yet-reserved
nodes closest to fitting it, and among equally close ones those where it could
start soonest (from the running jobs' time limits: ``ClusterSnapshot.now_us`` and
``NodeState.releases``); the reservation starts when the last of them is ready
(unknown when a job it waits for has no time limit). Every job after it in queue
order, of any queue, may use a reserved node only if it leaves the reserver what
it needs: with the start unknown, for each of usable GPUs, free CPUs and free
memory, at least min(what the reserver asks, what was free when it reserved);
with the start known, a rank of the reserver at the start, counting what running
jobs give back by then. A job kept out only by this rule waits "behind job X".
Backfill: a job whose time limit ends by the start may use a reserved node
whatever it takes; a job without a time limit never does.

Quotas (``QuotaLedger``, from the lab policy): a job that would take its user, group
or cohort over quota waits with the quota's words ("quota: group nlp uses 16/16
GPUs") and reserves nothing; a job placed counts against the quotas at once.

Datasets (``Policy.dataset_locality``): by default a preference (data nodes rank
first; a job runs elsewhere rather than wait), a hard constraint under REQUIRE;
under both a job naming a dataset that is on no node at all waits.

Within a plan free resources only shrink and reservations only grow, so a job
shape (``Ask``) that failed once fails for every later job: those are decided
without rescanning the nodes. Reasons for waiting jobs are written at the end,
against the resources left after every placement, once per shape.

``PlanBuilder`` exposes the same walk one decision, or one slice of decisions, at a
time (benchmarks time each decision with it; the leader plans a deep queue in slices
and serves requests between them); ``schedule`` runs it to the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from murmur.scheduler import reasons
from murmur.scheduler.ask import Ask
from murmur.scheduler.errors import QueueOrderError
from murmur.scheduler.feasibility import check_room
from murmur.scheduler.leftover import Leftover
from murmur.scheduler.policy import DEFAULT_POLICY, NodeChoice, Policy
from murmur.scheduler.quota import QuotaLedger
from murmur.scheduler.ranking import NodeScore, choose_indices, score_room
from murmur.scheduler.reservation import NodeHold, Reservation, rooms_to_reserve
from murmur.scheduler.room import NodeRoom
from murmur.scheduler.room_index import RoomIndex
from murmur.scheduler.slices import Slices, finish
from murmur.scheduler.snapshot import ClusterSnapshot, JobRequest


@dataclass(frozen=True, slots=True)
class RankAssignment:
    """One rank of a placed job: its node and the GPUs it gets there.

    Attributes:
        rank: 0-based; rank 0 is on the best-scored node (the gang's master).
        node: the node's name.
        gpu_indices: the GPU indices on that node, ascending; empty for CPU jobs.
    """

    rank: int
    node: str
    gpu_indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """A job placed by the plan, with every rank assigned.

    Attributes:
        job_id: the job's id.
        assignments: one per rank, in rank order, on distinct nodes.
    """

    job_id: str
    assignments: tuple[RankAssignment, ...]


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job the plan did not place, and why.

    Attributes:
        job_id: the job's id.
        reason: what it waits for, starting with ``"waiting: "``.
        position: 1-based position among the jobs of its queue still waiting
            after this plan, in queue order.
    """

    job_id: str
    reason: str
    position: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What to start now, what waits and why, and what is held for whom.

    Every pending job of the snapshot appears exactly once, in ``placements`` or in
    ``waiting``; both are in queue order.

    Attributes:
        placements: jobs to start, with their nodes and GPUs.
        waiting: jobs not placed, each with a reason and its queue position.
        reservations: nodes held for blocked jobs in this plan (see
            ``scheduler.reservation``); informational, nothing to apply.
    """

    placements: tuple[Placement, ...]
    waiting: tuple[Waiting, ...]
    reservations: tuple[Reservation, ...] = ()


def schedule(snapshot: ClusterSnapshot, *, policy: Policy = DEFAULT_POLICY) -> Plan:
    """Place what fits of ``snapshot.pending`` on ``snapshot.nodes``.

    A pure function: the same snapshot and policy give the same plan, whatever the
    order the snapshot lists nodes (under best fit) or jobs in.

    Args:
        snapshot: the cluster at one moment.
        policy: queue order, node choice, dataset locality, reservations.

    Returns:
        The plan: placements, waiting jobs with reasons, reservations.

    Raises:
        QueueOrderError: ``policy.queue_order`` did not return a permutation of the
            pending jobs.
    """
    builder = PlanBuilder(snapshot, policy=policy)
    builder.decide(len(builder.order))
    return builder.build()


@dataclass(slots=True)
class _Wording:
    """Waiting reasons worded so far; valid while the plan places no more jobs.

    A reason depends on what is left after every placement, and on the holds of
    the jobs before its own: jobs decided later add holds only after it.
    """

    placements: int
    leftover: Leftover
    known: dict[Ask, tuple[str, list[NodeRoom]]]
    positions: Counter[str]
    waiting: list[Waiting]


@dataclass(slots=True)
class _Blocked:
    job: JobRequest
    order: int
    ask: Ask
    missing_datasets: tuple[str, ...]
    over_quota: str = ""


class PlanBuilder:
    """``schedule``, one decision at a time.

    Call ``decide_next`` until it returns None (or ``decide`` until it returns False),
    then ``build``.
    """

    def __init__(
        self,
        snapshot: ClusterSnapshot,
        *,
        policy: Policy = DEFAULT_POLICY,
        quota: QuotaLedger | None = None,
    ) -> None:
        """Args:
        snapshot: the nodes and the pending jobs.
        policy: the scheduling policy.
        quota: the GPUs held against the lab's quotas (shared by the builders of
            one plan's passes); None: no quotas.
        """
        self._policy = policy
        self._quota = quota
        self._now_us = snapshot.now_us
        self._order = _checked_order(snapshot.pending, policy)
        self._next = 0
        rooms = [NodeRoom(node) for node in snapshot.nodes]
        wanted = frozenset(name for job in snapshot.pending for name in job.datasets)
        for room in rooms:
            room.wanted_datasets = room.datasets & wanted
        self._position = {room: position for position, room in enumerate(rooms)}
        self._rooms_by_name = sorted(rooms, key=lambda room: room.name)
        self._index = RoomIndex(rooms)
        self._datasets_anywhere = frozenset().union(*(node.datasets for node in snapshot.nodes))
        self._asks: dict[tuple[object, ...], Ask] = {}
        self._failed: set[object] = set()
        self._could_run: dict[Ask, list[NodeRoom]] = {}
        self._holds: dict[str, NodeHold] = {}
        self._reserved_queues: set[str] = set()
        self._reservations: list[Reservation] = []
        self._placements: list[Placement] = []
        self._blocked: list[_Blocked] = []
        self._wording: _Wording | None = None

    @property
    def order(self) -> tuple[JobRequest, ...]:
        """The pending jobs in the order they are decided."""
        return self._order

    def decide_next(self) -> JobRequest | None:
        """Place the next job in queue order, or note that it waits.

        Returns:
            The job decided, or None when every job has been decided.
        """
        if self._next >= len(self._order):
            return None
        job = self._order[self._next]
        self._decide(job, self._next)
        self._next += 1
        return job

    def decide(self, count: int) -> bool:
        """Decide up to ``count`` more jobs in queue order; returns whether any remain.

        A caller may do other work between calls (the leader serves requests): the
        builder works on its own copy of the snapshot's free resources.
        """
        order = self._order
        end = min(len(order), self._next + max(0, count))
        for position in range(self._next, end):
            self._decide(order[position], position)
        self._next = end
        return end < len(order)

    def build(self) -> Plan:
        """The plan of the jobs decided so far (every job, once all are decided)."""
        return self.plan_with(self._waiting())

    def plan_with(self, waiting: tuple[Waiting, ...]) -> Plan:
        """The plan, given its waiting jobs from ``waiting_in_slices``."""
        return Plan(
            placements=tuple(self._placements),
            waiting=waiting,
            reservations=tuple(self._reservations),
        )

    def _ask(self, job: JobRequest) -> Ask:
        key: tuple[object, ...] = (
            job.gpus,
            job.gpu_model,
            job.gpu_share,
            job.cpus,
            job.memory_bytes,
            job.nodes,
        )
        if job.datasets:
            key = (*key, *job.datasets)
        ask = self._asks.get(key)
        if ask is None:
            ask = Ask.of(job, self._policy.dataset_locality, self._policy.default_request)
            self._asks[key] = ask
        return ask

    def _decide(self, job: JobRequest, order: int) -> None:
        ask = self._ask(job)
        missing = tuple(name for name in job.datasets if name not in self._datasets_anywhere)
        if missing:
            self._blocked.append(_Blocked(job, order, ask, missing))
            return
        if self._quota is not None:
            over = self._quota.refusal(job.user, job.gpus * job.nodes)
            if over is not None:
                self._blocked.append(_Blocked(job, order, ask, (), over))
                return
        # A shape that failed fails again, but for backfill: a shorter time limit may
        # fit where a longer one did not.
        shape: object = (ask, job.time_limit_us) if self._holds and job.time_limit_us else ask
        if shape not in self._failed:
            chosen = self._choose(job, ask)
            if chosen is not None:
                self._place(job, ask, chosen)
                return
            self._failed.add(shape)
        self._blocked.append(_Blocked(job, order, ask, ()))
        if self._policy.reserve_for_blocked_jobs and job.queue not in self._reserved_queues:
            self._reserve(job, ask, order)

    def _choose(self, job: JobRequest, ask: Ask) -> list[tuple[NodeRoom, tuple[int, ...]]] | None:
        """The rooms (best first) and GPUs for every rank, or None if not enough fit."""
        first_fit = self._policy.node_choice is NodeChoice.FIRST_FIT
        candidates = self._index.candidates(ask)
        if first_fit:
            candidates = iter(sorted(candidates, key=self._position.__getitem__))
        datasets = frozenset(job.datasets)
        holds = self._holds
        scored: list[tuple[NodeScore, NodeRoom]] = []
        found: list[NodeRoom] = []
        for room in candidates:
            if check_room(room, ask) is not None:
                continue
            hold = holds.get(room.name)
            if (
                hold is not None
                and not hold.spares(room, ask, choose_indices(room, ask))
                and not hold.lets_backfill(job.time_limit_us, self._now_us)
            ):
                continue
            if first_fit:
                found.append(room)
                if len(found) == ask.nodes:
                    break
            else:
                scored.append((score_room(room, ask, datasets, job), room))
        if not first_fit:
            scored.sort(key=lambda pair: pair[0])
            found = [room for _, room in scored[: ask.nodes]]
        if len(found) < ask.nodes:
            return None
        return [(room, choose_indices(room, ask)) for room in found]

    def _place(
        self, job: JobRequest, ask: Ask, chosen: list[tuple[NodeRoom, tuple[int, ...]]]
    ) -> None:
        assignments = []
        holds = self._holds
        for rank, (room, gpu_indices) in enumerate(chosen):
            hold = holds.get(room.name) if holds else None
            if hold is not None and not hold.lets_backfill(job.time_limit_us, self._now_us):
                hold.take(ask, gpu_indices)
            room.take(ask, gpu_indices)
            if job.spread:
                room.add_to_spread(job.spread)
            self._index.moved(room)
            assignments.append(RankAssignment(rank, room.name, gpu_indices))
        self._placements.append(Placement(job.id, tuple(assignments)))
        if self._quota is not None:
            self._quota.take(job.user, job.gpus * job.nodes)

    def _rooms_that_could_run(self, ask: Ask) -> list[NodeRoom]:
        """Rooms where ``ask`` fits once running jobs end (static rules pass)."""
        could = self._could_run.get(ask)
        if could is None:
            could = []
            for room in self._rooms_by_name:
                why = check_room(room, ask)
                if why is None or why.transient:
                    could.append(room)
            self._could_run[ask] = could
        return could

    def _reserve(self, job: JobRequest, ask: Ask, order: int) -> None:
        could = self._rooms_that_could_run(ask)
        if len(could) < ask.nodes:
            return  # It can never run as the cluster stands; holding room helps nobody.
        open_rooms = [room for room in could if room.name not in self._holds]
        if not open_rooms:
            return
        chosen, start = rooms_to_reserve(
            open_rooms, ask, frozenset(job.datasets), ask.nodes, self._now_us
        )
        for room in chosen:
            self._holds[room.name] = NodeHold(job, order, ask, room, start)
        self._reserved_queues.add(job.queue)
        names = tuple(room.name for room in chosen)
        self._reservations.append(Reservation(job.id, job.queue, names, start))

    def extend(self, jobs: Sequence[JobRequest], now_us: int | None = None) -> bool:
        """Adds ``jobs`` (new pending jobs) to be decided after this plan's own, if the
        policy orders every one of them after all of those and none names a dataset;
        otherwise changes nothing and returns False. ``now_us``: the time they are
        decided at; a time other than the snapshot's is refused while a reservation
        knows its shadow time (backfill is judged against the time of the plan).

        Deciding them then gives the very plan a fresh builder would make of the
        snapshot with these jobs added: a plan decides jobs one after another, each
        on what the ones before it left, and a job named no dataset does not change
        how nodes rank (``NodeRoom.wanted_datasets``). The leader adds the jobs
        submitted since its last plan rather than planning a deep queue again.
        """
        if now_us is not None and now_us != self._now_us:
            if any(hold.shadow_us is not None for hold in self._holds.values()):
                return False
            self._now_us = now_us
        if not jobs:
            return True
        if any(job.datasets for job in jobs):
            return False
        order = _checked_order((*self._order, *jobs), self._policy)
        if order[: len(self._order)] != self._order:
            return False
        self._order = order
        return True

    def _waiting(self) -> tuple[Waiting, ...]:
        return finish(self.waiting_in_slices(len(self._blocked) or 1))

    def waiting_in_slices(self, count: int) -> Slices[tuple[Waiting, ...]]:
        """``build``'s waiting jobs, as a generator that yields after every ``count``
        of them and returns them all (call once every job is decided).

        Words only the jobs not worded by an earlier call, unless the plan placed a
        job since (what is left then changed, and with it every reason).
        """
        wording = self._wording
        if wording is None or wording.placements != len(self._placements):
            wording = self._wording = _Wording(
                len(self._placements), Leftover(self._rooms_by_name), {}, Counter(), []
            )
        waiting = wording.waiting
        for number, blocked in enumerate(self._blocked[len(waiting) :], start=1):
            job = blocked.job
            wording.positions[job.queue] += 1
            if blocked.missing_datasets:
                reason = reasons.datasets_nowhere(blocked.missing_datasets)
            elif blocked.over_quota:
                reason = blocked.over_quota
            else:
                found = wording.known.get(blocked.ask)
                if found is None:
                    found = (
                        reasons.unfit(job, blocked.ask, wording.leftover),
                        self._fitting(blocked.ask),
                    )
                    wording.known[blocked.ask] = found
                reason, fitting = found
                blocker = self._blocker(fitting, blocked)
                if blocker is not None:
                    reason = reasons.behind(blocker.job, job, blocker.shadow_us)
            waiting.append(Waiting(job.id, reason, wording.positions[job.queue]))
            if number % count == 0:
                yield
        return tuple(waiting)

    def _fitting(self, ask: Ask) -> list[NodeRoom]:
        """Rooms where a rank of ``ask`` fits at the end of the plan, holds aside."""
        return [room for room in self._index.candidates(ask) if check_room(room, ask) is None]

    def _blocker(self, fitting: list[NodeRoom], blocked: _Blocked) -> NodeHold | None:
        """The earliest reserver ahead of ``blocked`` holding a room it would fit in.

        Free resources only shrink within a plan, so a job that fits rooms at the
        end fitted them when decided: it waits because those rooms were held.
        """
        if len(fitting) < blocked.ask.nodes:
            return None
        holds = [self._holds.get(room.name) for room in fitting]
        ahead = [hold for hold in holds if hold is not None and hold.order < blocked.order]
        if not ahead:
            return None
        return min(ahead, key=lambda hold: hold.order)


def _checked_order(pending: Sequence[JobRequest], policy: Policy) -> tuple[JobRequest, ...]:
    order = tuple(policy.queue_order(pending))
    if len(order) != len(pending):
        raise QueueOrderError(f"{len(pending)} pending jobs, {len(order)} returned")
    pending_ids = {job.id for job in pending}
    ordered_ids = {job.id for job in order}
    if ordered_ids != pending_ids:
        unknown = sorted(ordered_ids - pending_ids)
        lost = sorted(pending_ids - ordered_ids)
        raise QueueOrderError(f"unknown {unknown}, lost {lost}")
    return order
