"""The leader's placement step: the control state and the nodes' offers in, AssignJob
commands out.

Pure: the leader gathers offers (from gossip) and the time, calls ``plan_cluster``,
and proposes the commands it returns; applying them re-checks each against the state
of the moment (``ControlState`` refuses an assignment that raced a cancel or another
plan), so a plan computed from a slightly old state is safe to propose.

What a node has free is its offer minus what the state's active assignments on it
hold (their GPUs, and the CPUs and memory their specs ask for, a spec that names
none counting as the policy's default request, as the scheduler counts a pending
job): a run holds its resources from the moment it is assigned until its end is
applied, whatever the node's own telemetry says. The node itself neither counts
nor limits CPUs and memory a spec does not name: the default weighs in placement
only.

Runtimes: the scheduler knows nothing of them, so when some schedulable node lacks
a runtime that pending jobs need, jobs are planned in one pass per runtime (the pass
of the runtime whose first job comes first in queue order goes first), each pass
seeing only the nodes that offer the runtime as schedulable and what the passes
before it took. When every schedulable node offers every runtime asked for (the
usual case) there is one pass.

Drains: a node the control state holds drained (``SetNodeDrain``) is closed,
reason "draining", whatever its offer says: the log has the drain the moment the
admin's command is acknowledged, gossip only later (``honour_drains``).

The lab policy (``murmur policy apply``, scheduler/lab_policy.py), as the state holds
it, refines the configured policy (``effective_policy``): tiers order the queue (and,
when a group may reclaim what it lent, jobs within their group's quota come before
jobs that would borrow: ``borrowing_jobs``), its default request replaces the
configuration's, and its quotas hold back jobs that would go over
(``quota_ledger``: what active assignments hold, by user).

Held jobs: a job waiting on another's end (``spec.after``) and an array's tasks
beyond its ``%P`` are not planned at all (``ControlState.placeable``): the state
says why they wait (``ControlState.hold_reason``).

Multi-node jobs (``spec.nodes > 1``, gangs) are placed whole or not at all: the
scheduler gives every rank a node of its own in one decision, and one ``AssignJob``
carries every rank, with a rendezvous port on rank 0's node (``MASTER_PORT``) that no
other gang mastered there holds (``GANG_PORTS``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from murmur import scheduler
from murmur.node.control.queue.commands import AssignJob, RankPlacement
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states
from murmur.node.jobspec.arrays import task_index
from murmur.scheduler.fair_share import decayed_usage, fair_share, multifactor_order
from murmur.scheduler.lab_policy import LabPolicy
from murmur.scheduler.queue_order import QueueOrder, lenders_first, tiered
from murmur.scheduler.quota import QuotaLedger
from murmur.scheduler.slices import Slices, finish
from murmur.v1 import types_pb2

DOCKER = "docker"
PROCESS = "process"

GANG_PORTS = range(29500, 30000)
"""Where a gang's rendezvous port (torchrun's ``MASTER_PORT``) is chosen on its rank
0's node: the lowest no other gang mastered there holds. torchrun's own default,
29500, is the first: a lab that runs torchrun by hand keeps to its habits elsewhere."""

_EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GpuOffer:
    """One GPU of a node, as its inventory reports it.

    ``nvlink_group`` and ``pcie_group`` name the GPUs near it (see ``GpuDevice`` in
    types.proto); None when it is in no group or its node could not say.
    """

    index: int
    model: str
    memory_bytes: int = 0
    nvlink_group: int | None = None
    pcie_group: int | None = None


@dataclass(frozen=True, slots=True)
class NodeOffer:
    """What a node offers to jobs, as the leader knows it from gossip.

    Attributes:
        name: the node's name; assignments name it.
        gpus: every GPU of the node, held or not.
        cpus: CPUs the node offers to jobs in all.
        memory_bytes: memory the node offers to jobs in all.
        runtimes: the runtimes it can start runs with ("process", "docker").
        datasets: names of the datasets on its disks.
        schedulable: False unless alive and not draining.
        unschedulable_reason: a word or two users see, e.g. "draining", "suspect".
        labels: free-form facts about the node.
    """

    name: str
    gpus: tuple[GpuOffer, ...]
    cpus: float
    memory_bytes: int
    runtimes: frozenset[str]
    datasets: frozenset[str] = frozenset()
    schedulable: bool = True
    unschedulable_reason: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY_LABELS, hash=False)


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """What one placement step decided.

    Attributes:
        assignments: the commands to propose, in queue order.
        waiting: every due pending job not assigned, with why and its position among
            the waiting jobs of its queue, in queue order.
        reservations: nodes held for blocked jobs (informational).
    """

    assignments: tuple[AssignJob, ...]
    waiting: tuple[scheduler.Waiting, ...]
    reservations: tuple[scheduler.Reservation, ...] = ()


DRAINING = "draining"


def honour_drains(state: ControlState, offers: Iterable[NodeOffer]) -> tuple[NodeOffer, ...]:
    """``offers``, with every node the state holds drained closed ("draining"); a
    node already closed keeps its own reason."""
    drained = state.drained_nodes()
    if not drained:
        return tuple(offers)
    return tuple(
        replace(offer, schedulable=False, unschedulable_reason=DRAINING)
        if offer.schedulable and offer.name in drained
        else offer
        for offer in offers
    )


def effective_policy(
    base: scheduler.Policy,
    lab: LabPolicy,
    *,
    fair_order: QueueOrder | None = None,
    borrowing: Collection[str] = frozenset(),
) -> scheduler.Policy:
    """``base`` (the configuration's) refined by the lab policy: its tiers first in
    the queue order, then jobs within their group's quota before the ``borrowing``
    ones (``borrowing_jobs``), then ``fair_order`` (fair share, when the policy asks
    for it: ``fair_share_order``) or the configured order; its default request where
    it sets one."""
    within = fair_order or base.queue_order
    if borrowing:
        within = lenders_first(borrowing, within)
    policy = replace(base, queue_order=within) if within is not base.queue_order else base
    if lab.tiers:
        policy = replace(policy, queue_order=tiered(lambda queue: lab.tier_of(queue)[1], within))
    if lab.default_cpus is not None or lab.default_memory_bytes is not None:
        configured = base.default_request
        policy = replace(
            policy,
            default_request=scheduler.DefaultRequest(
                cpus=lab.default_cpus if lab.default_cpus is not None else configured.cpus,
                memory_bytes=(
                    lab.default_memory_bytes
                    if lab.default_memory_bytes is not None
                    else configured.memory_bytes
                ),
            ),
        )
    return policy


def fair_share_order(
    state: ControlState, jobs: Iterable[ClusterJob], now_us: int
) -> QueueOrder | None:
    """The multifactor order (fair share, age, priority, size) by the usage the state
    recorded, when the lab policy sets a fair-share half-life; else None."""
    lab = state.lab_policy
    if not lab.fair_share_half_life_us:
        return None
    usage = decayed_usage(state.usage_buckets(), now_us, lab.fair_share_half_life_us)
    return multifactor_order(
        lab, fair_share(lab, usage), now_us, {job.id: job.submitted_at_us for job in jobs}
    )


def borrowing_jobs(
    lab: LabPolicy, jobs: Iterable[ClusterJob], quota: QuotaLedger | None
) -> frozenset[str]:
    """The ids of ``jobs`` that would borrow from their cohort if placed now (their
    group's GPUs held, plus theirs, over its quota), when the lab policy lets a group
    reclaim what it lent (``reclaim_lent_quota``); empty otherwise. Judged once per
    plan, from what is held when it starts."""
    if not lab.reclaim_lent_quota or quota is None:
        return frozenset()
    found = set()
    for job in jobs:
        group = lab.group_of(job.user)
        if group is None or group.gpus is None or not group.cohort:
            continue
        gpus = job.spec.gpus.count * max(1, job.spec.nodes)
        if gpus and quota.held_by_group(group.name) + gpus > group.gpus:
            found.add(job.id)
    return frozenset(found)


def quota_ledger(state: ControlState) -> QuotaLedger | None:
    """The GPUs active assignments hold, against the lab policy's quotas; None when
    the policy sets none."""
    lab = state.lab_policy
    if not lab.user_gpus and all(group.gpus is None and group.user_gpus is None
                                 for group in lab.groups.values()):  # fmt: skip
        return None
    return QuotaLedger(
        lab,
        (
            (job.user, len(rank.gpu_indices))
            for node in state.nodes_with_runs()
            for job in state.active_on(node)
            if (rank := job.rank_on(node)) is not None
        ),
    )


def current_node_states(
    state: ControlState, offers: Sequence[NodeOffer], policy: scheduler.Policy, runtime: str
) -> list[scheduler.NodeState]:
    """Every offered node as the scheduler would see it now (its offer less what the
    state's active assignments hold), closed unless it offers ``runtime``."""
    return [use.node_state(runtime) for use in _uses_of(state, offers, policy).values()]


def _uses_of(
    state: ControlState, offers: Sequence[NodeOffer], policy: scheduler.Policy
) -> dict[str, _NodeUse]:
    """Each offered node with what the state's active assignments hold on it."""
    uses = {offer.name: _NodeUse(offer, policy.default_request) for offer in offers}
    for name, use in uses.items():
        for job in state.active_on(name):
            rank = job.rank_on(name)
            assert rank is not None
            use.take(job.id, job.spec, rank.gpu_indices, rank.started_at_us or rank.assigned_at_us)
            if rank.master_port and rank.rank == 0:
                use.ports.add(rank.master_port)
    return uses


def runtime_of(spec: types_pb2.JobSpec) -> str:
    """The runtime a spec runs with (an unset one as validation would fill it)."""
    if spec.runtime == types_pb2.JOB_RUNTIME_DOCKER:
        return DOCKER
    if spec.runtime == types_pb2.JOB_RUNTIME_PROCESS:
        return PROCESS
    return DOCKER if spec.image else PROCESS


BACKFILL_SLACK_US = 90_000_000
"""Added to a job's time limit when the scheduler judges backfill by it: the limit
counts from the run's start on its node, which may come later than the plan (an
image to load, the start itself), and the stop takes its grace after the limit."""

_REQUESTS: dict[str, tuple[types_pb2.JobSpec, int, str, scheduler.JobRequest]] = {}
"""``job_request`` memo, by job id, with the spec object, submit order and previous
node it was made from: what a job asks never changes (the state shares one spec
object per job for its whole life) but for the node a restarting replica would rather
have, and a leader plans over the whole pending queue many times a second."""
_REQUESTS_LIMIT = 200_000


def job_request(job: ClusterJob) -> scheduler.JobRequest:
    """What ``job`` asks of the cluster (what it needs, and its place in the queue)."""
    known = _REQUESTS.get(job.id)
    previous = previous_node(job)
    if (
        known is not None
        and known[0] is job.spec
        and known[1] == job.submit_order
        and known[2] == previous
    ):
        return known[3]
    if len(_REQUESTS) >= _REQUESTS_LIMIT:
        _REQUESTS.clear()
    request = _build_request(job, previous)
    _REQUESTS[job.id] = (job.spec, job.submit_order, previous, request)
    return request


def previous_node(job: ClusterJob) -> str:
    """The node a service replica restarting after its run ended there would rather
    run on again (its image and weights are warm there); none for other jobs, and
    none after a run lost with its node."""
    if not job.past_runs or not job.spec.HasField("replica_of"):
        return ""
    last = job.past_runs[-1]
    return "" if last.state == states.LOST else last.assignment.node


def spread_group(spec: types_pb2.JobSpec) -> str:
    """The scheduler's spread group of a job: its service's name for a replica (so
    one node's loss takes as few of a service's replicas as it can), else none."""
    return spec.replica_of.service if spec.HasField("replica_of") else ""


def _build_request(job: ClusterJob, previous: str) -> scheduler.JobRequest:
    spec = job.spec
    return scheduler.JobRequest(
        id=job.id,
        user=job.user,
        queue=job.queue,
        priority=job.priority,
        submit_order=job.submit_order,
        submit_rank=task_index(job.id),
        gpus=spec.gpus.count,
        gpu_model=spec.gpus.model,
        gpu_share=spec.gpus.share,
        cpus=spec.cpus,
        memory_bytes=spec.memory_bytes,
        datasets=tuple(spec.datasets),
        nodes=max(1, spec.nodes),
        spread=spread_group(spec),
        previous_node=previous,
        time_limit_us=(
            spec.time_limit.ToMicroseconds() + BACKFILL_SLACK_US
            if spec.time_limit.ToMicroseconds() > 0
            else 0
        ),
    )


class _NodeUse:
    """What active (and newly planned) runs hold on one offered node."""

    __slots__ = (
        "cpus", "default_request", "holders", "memory", "offer", "ports", "releases", "shared",
        "spread",
    )  # fmt: skip

    def __init__(self, offer: NodeOffer, default_request: scheduler.DefaultRequest) -> None:
        self.offer = offer
        self.default_request = default_request
        self.holders: dict[int, list[str]] = {}
        self.shared: dict[int, bool] = {}
        self.cpus = 0.0
        self.memory = 0
        self.releases: list[scheduler.Release] = []
        self.ports: set[int] = set()
        """Rendezvous ports of the gangs mastered here."""
        self.spread: dict[str, int] = {}
        """Replicas running here, by service (the scheduler spreads a service's)."""

    def take_port(self) -> int:
        """A rendezvous port for a new gang mastered here (``GANG_PORTS``); 0 when
        every one is held."""
        port = next((port for port in GANG_PORTS if port not in self.ports), 0)
        if port:
            self.ports.add(port)
        return port

    def take(
        self,
        job_id: str,
        spec: types_pb2.JobSpec,
        gpu_indices: Iterable[int],
        started_us: int = 0,
    ) -> None:
        """Counts what a run of ``job_id`` holds here; with ``started_us`` and a time
        limit in ``spec``, also when it gives it back (for backfill)."""
        shares = spec.gpus.share and spec.gpus.count > 0
        for index in gpu_indices:
            self.holders.setdefault(index, []).append(job_id)
            self.shared[index] = self.shared.get(index, True) and shares
        cpus = self.default_request.cpus_of(spec.cpus)
        memory = self.default_request.memory_of(spec.memory_bytes)
        group = spread_group(spec)
        if group:
            self.spread[group] = self.spread.get(group, 0) + 1
        self.cpus += cpus
        self.memory += memory
        limit_us = spec.time_limit.ToMicroseconds()
        if started_us and limit_us > 0:
            self.releases.append(scheduler.Release(job_id, started_us + limit_us, cpus, memory))

    def node_state(self, runtime: str | None) -> scheduler.NodeState:
        """The node as the scheduler sees it; closed unless it offers ``runtime`` (if given)."""
        offer = self.offer
        schedulable, why = offer.schedulable, offer.unschedulable_reason
        if not schedulable:
            why = why or "not schedulable"
        elif runtime is not None and runtime not in offer.runtimes:
            schedulable, why = False, f"missing the {runtime} runtime"
        return scheduler.NodeState(
            name=offer.name,
            gpus=tuple(
                scheduler.GpuState(
                    index=gpu.index,
                    model=gpu.model,
                    memory_bytes=gpu.memory_bytes,
                    holders=tuple(self.holders.get(gpu.index, ())),
                    shared=self.shared.get(gpu.index, False),
                    nvlink_group=gpu.nvlink_group,
                    pcie_group=gpu.pcie_group,
                )
                for gpu in offer.gpus
            ),
            cpus_total=offer.cpus,
            cpus_free=max(0.0, offer.cpus - self.cpus),
            memory_total_bytes=offer.memory_bytes,
            memory_free_bytes=max(0, offer.memory_bytes - self.memory),
            datasets=offer.datasets,
            schedulable=schedulable,
            unschedulable_reason=why if not schedulable else "",
            labels=offer.labels,
            releases=tuple(self.releases),
            spread=dict(self.spread),
        )


def _passes(
    jobs: Sequence[ClusterJob], order: Sequence[scheduler.JobRequest], offers: Sequence[NodeOffer]
) -> list[tuple[str | None, list[ClusterJob]]]:
    """The planning passes: (runtime or None for "any", its jobs), in queue order."""
    by_id = {job.id: job for job in jobs}
    groups: dict[str, list[ClusterJob]] = {}
    for request in order:  # dicts keep insertion order: first job first
        job = by_id[request.id]
        groups.setdefault(runtime_of(job.spec), []).append(job)
    open_nodes = [offer for offer in offers if offer.schedulable]
    if all(runtime in offer.runtimes for offer in open_nodes for runtime in groups):
        return [(None, list(jobs))] if jobs else []
    return [(runtime, group) for runtime, group in groups.items()]


PLAN_SLICE = 250
"""Decisions (or waiting reasons) per slice of ``plan_in_slices``: about 0.5 ms."""

PlanSteps = Slices["ClusterPlan"]
"""``plan_in_slices``: yields between slices of work, returns the plan."""


def plan_cluster(
    state: ControlState,
    offers: Sequence[NodeOffer],
    now_us: int,
    *,
    policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
    new_run_id: Callable[[], str],
) -> ClusterPlan:
    """Places what fits of the state's due pending jobs on the offered nodes.

    Args:
        state: the control state (read only).
        offers: every known node, schedulable or not, with unique names.
        now_us: the leader's time; backed-off jobs not yet due wait.
        policy: the scheduling policy.
        new_run_id: makes a fresh run id, called once per assignment in order.

    Returns:
        The assignments to propose and why the rest wait.

    Raises:
        scheduler.SchedulerError: an offer the scheduler refuses (two nodes with one
            name, negative or non-finite resources, a GPU index twice).
    """
    return finish(plan_in_slices(state, offers, now_us, policy=policy, new_run_id=new_run_id))


def plan_in_slices(
    state: ControlState,
    offers: Sequence[NodeOffer],
    now_us: int,
    *,
    policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
    new_run_id: Callable[[], str],
    slice_size: int = PLAN_SLICE,
) -> PlanSteps:
    """``plan_cluster``, as a generator that yields after each slice of work (about
    ``slice_size`` decisions) and returns the same plan.

    What it plans from is read from ``state`` before the first yield; the caller may
    change the state between slices (a leader applies entries meanwhile): the plan is
    then as of the first read, which is safe to propose (see the module docstring).
    """
    plan, _ = yield from plan_keeping_builder(
        state, offers, now_us, policy=policy, new_run_id=new_run_id, slice_size=slice_size
    )
    return plan


def plan_keeping_builder(
    state: ControlState,
    offers: Sequence[NodeOffer],
    now_us: int,
    *,
    policy: scheduler.Policy,
    new_run_id: Callable[[], str],
    slice_size: int,
) -> Slices[tuple[ClusterPlan, OnePass | None]]:
    """``plan_in_slices``, returning with the plan what the next may build on when it
    was made in one pass (``OnePass``)."""
    offers = honour_drains(state, offers)
    due = state.placeable(now_us)  # less jobs held back: dependencies, an array's %P
    quota = quota_ledger(state)
    lab = state.lab_policy
    policy = effective_policy(
        policy, lab,
        fair_order=fair_share_order(state, due, now_us),
        borrowing=borrowing_jobs(lab, due, quota),
    )  # fmt: skip
    uses = _uses_of(state, offers, policy)
    requests = {job.id: job_request(job) for job in due}
    yield
    order = policy.queue_order(tuple(requests.values()))
    yield
    passes = _passes(due, order, offers)
    yield
    assignments: list[AssignJob] = []
    reservations: list[scheduler.Reservation] = []
    plans: list[scheduler.Plan] = []
    builder: scheduler.PlanBuilder | None = None
    for runtime, jobs in passes:
        snapshot = scheduler.ClusterSnapshot(
            nodes=tuple(use.node_state(runtime) for use in uses.values()),
            pending=tuple(requests[job.id] for job in jobs),
            now_us=now_us,
        )
        builder = scheduler.PlanBuilder(snapshot, policy=policy, quota=quota)
        yield
        while builder.decide(slice_size):
            yield
        plan = builder.plan_with((yield from builder.waiting_in_slices(slice_size)))
        plans.append(plan)
        yield
        for ranks, job in placed_jobs(plan, jobs):
            for rank in ranks:
                uses[rank.node].take(job.id, job.spec, rank.gpu_indices, now_us)
            port = uses[ranks[0].node].take_port() if len(ranks) > 1 else 0
            assignments.append(assignment_of(job, ranks, new_run_id(), now_us, master_port=port))
        reservations.extend(plan.reservations)
    if len(plans) == 1:
        # One pass over every due job: its plan's order, positions and reasons are
        # the cluster's already.
        whole = ClusterPlan(
            assignments=tuple(assignments),
            waiting=plans[0].waiting,
            reservations=tuple(reservations),
        )
        assert builder is not None  # one pass, one builder
        return whole, OnePass(builder, policy)
    waiting: dict[str, str] = {}
    for plan in plans:
        waiting.update((entry.job_id, entry.reason) for entry in plan.waiting)
    yield
    whole = ClusterPlan(
        assignments=_in_order(assignments, order),
        waiting=positions_of(waiting, order),
        reservations=tuple(reservations),
    )
    return whole, None


@dataclass(frozen=True, slots=True)
class OnePass:
    """A plan made by one builder over every due job (one pass: every open node
    offers every runtime asked for). Jobs submitted later may be decided on top of
    ``builder`` (``murmur.node.control.leader.planner``).

    Attributes:
        builder: the pass's builder, every job decided.
        policy: what the plan was made under (the lab policy's refinements in).
    """

    builder: scheduler.PlanBuilder
    policy: scheduler.Policy


def placed_jobs(
    plan: scheduler.Plan, jobs: Iterable[ClusterJob]
) -> list[tuple[tuple[scheduler.RankAssignment, ...], ClusterJob]]:
    """Each placement of ``plan`` (its ranks, rank 0 first), with its job."""
    by_id = {job.id: job for job in jobs}
    return [(placement.assignments, by_id[placement.job_id]) for placement in plan.placements]


def assignment_of(
    job: ClusterJob,
    ranks: Sequence[scheduler.RankAssignment],
    run_id: str,
    now_us: int,
    *,
    master_port: int = 0,
) -> AssignJob:
    """The command that gives ``job`` its next run where ``ranks`` say (a gang's
    rendezvous on ``master_port`` of rank 0's node)."""
    first, *others = ranks
    return AssignJob(
        job_id=job.id,
        node=first.node,
        run_id=run_id,
        attempt=job.attempts + 1,
        gpu_indices=first.gpu_indices,
        at_us=now_us,
        other_ranks=tuple(RankPlacement(rank.node, rank.gpu_indices) for rank in others),
        master_port=master_port,
    )


def _in_order(
    assignments: list[AssignJob], order: Sequence[scheduler.JobRequest]
) -> tuple[AssignJob, ...]:
    rank = {request.id: position for position, request in enumerate(order)}
    return tuple(sorted(assignments, key=lambda command: rank[command.job_id]))


def positions_of(
    reasons: Mapping[str, str], order: Sequence[scheduler.JobRequest]
) -> tuple[scheduler.Waiting, ...]:
    """Waiting jobs in queue order, numbered within their queue."""
    positions: dict[str, int] = {}
    waiting = []
    for request in order:
        reason = reasons.get(request.id)
        if reason is None:
            continue
        positions[request.queue] = positions.get(request.queue, 0) + 1
        waiting.append(scheduler.Waiting(request.id, reason, positions[request.queue]))
    return tuple(waiting)


def plan_assignments(
    state: ControlState,
    offers: Sequence[NodeOffer],
    now_us: int,
    *,
    policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
    new_run_id: Callable[[], str],
) -> list[AssignJob]:
    """The AssignJob commands of ``plan_cluster`` (see there)."""
    plan = plan_cluster(state, offers, now_us, policy=policy, new_run_id=new_run_id)
    return list(plan.assignments)


def waiting_reasons(plan: ClusterPlan) -> dict[str, tuple[str, int]]:
    """Job id → (why it waits, its 1-based position among the waiting jobs of its queue)."""
    return {entry.job_id: (entry.reason, entry.position) for entry in plan.waiting}
