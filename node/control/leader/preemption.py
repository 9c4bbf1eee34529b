"""Preemption: which running jobs the leader stops for a waiting job, by tier or to
reclaim lent quota.

Only with the lab policy's ``[preemption]`` switches (scheduler/lab_policy.py).
After a placement pass, the leader looks at the first waiting jobs in queue order
(tiers first), skipping those held by a quota or asking for a gang; for the first
one it can make room for, it commits a ``PreemptJob`` per victim:

- ``tiers = true``: running jobs of strictly lower tiers
  (``scheduler.preemption.choose_victims``);
- ``reclaim_lent_quota = true``, for a job whose group stays within its own quota:
  running jobs of the other groups of its cohort that borrow beyond their own
  groups' quotas, of the job's tier or lower (``scheduler.reclaim``). A victim is
  requeued, and one that the queue order puts before the waiting job (under plain
  submission order, a borrower submitted earlier) would take its room back at the
  next pass by borrowing again, to be stopped again: such borrowers are spared,
  and so is one already stopped once for this job. The stop is made only when a
  plan of the next pass, as far as the waiting job (``_room_goes_to``), places it.

Each victim's node is told at once, as for a cancel: SIGTERM, then SIGKILL after
the node's ``stop_grace_seconds`` (the run sees that grace in
``MURMUR_STOP_GRACE_SECONDS``, to checkpoint); the run's end requeues the victim
with its attempt unspent, and the freed room goes to the waiting job at the next
pass (by tier, it is first in queue order among those that could take it; by
reclaim, as checked). The victim's history names the job it was stopped for and why
("preempted by job J: reclaiming quota lent by group nlp: group vision holds 12/8
GPUs; alice's job needs its room on n1").

One preemption at a time: while any victim is still being stopped, nothing more is
preempted, so a plan made before the room was freed never preempts twice for one
job. Equal tiers never preempt each other except to reclaim lent quota; a job held
by a quota, or asking for a gang, never preempts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from murmur import scheduler
from murmur.node.control.leader.placement import (
    ClusterPlan,
    NodeOffer,
    current_node_states,
    effective_policy,
    fair_share_order,
    job_request,
    quota_ledger,
    runtime_of,
)
from murmur.node.control.queue.commands import PreemptJob
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.scheduler.lab_policy import LabPolicy
from murmur.scheduler.preemption import Preemption, RunningJob, choose_victims, without
from murmur.scheduler.reclaim import QuotaUse, quota_use, reclaim_victims

LOOKAHEAD = 16
"""Waiting jobs looked at per pass, first in queue order."""


def preemptions(
    state: ControlState,
    offers: Sequence[NodeOffer],
    plan: ClusterPlan,
    now_us: int,
    *,
    policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
) -> list[PreemptJob]:
    """The commands that free room for the first waiting job that lower tiers, or
    borrowers of its group's quota, keep out; empty when preemption is off, under
    way, or would not help."""
    lab = state.lab_policy
    if not (lab.preempt_tiers or lab.reclaim_lent_quota) or not plan.waiting:
        return []
    base_policy = policy
    policy = effective_policy(policy, lab)
    holders = _holders(state, lab, policy)
    if holders is None:
        return []  # one at a time
    running: dict[str, list[RunningJob]] = {}
    for node, holder, stopping in holders:
        if not stopping:
            running.setdefault(node, []).append(holder)
    if not running:
        return []
    lowest = min(victim.tier for victims in running.values() for victim in victims)
    use = quota_use(lab, (holder for _, holder, _ in holders)) if lab.reclaim_lent_quota else None
    if use is not None and not use.borrowing:
        use = None  # nobody borrows: nothing to reclaim
    nodes_by_runtime: dict[str, list[scheduler.NodeState]] = {}
    for position, entry in enumerate(plan.waiting[:LOOKAHEAD]):
        waiting = state.job(entry.job_id)
        if waiting is None or waiting.spec.nodes > 1 or entry.reason.startswith("quota:"):
            continue
        tier_name, tier = lab.tier_of(waiting.queue)
        by_tier = lab.preempt_tiers and tier > lowest
        if not by_tier and use is None:
            continue
        runtime = runtime_of(waiting.spec)
        nodes = nodes_by_runtime.get(runtime)
        if nodes is None:
            nodes = nodes_by_runtime[runtime] = current_node_states(state, offers, policy, runtime)
        request = job_request(waiting)
        if by_tier:
            chosen = choose_victims(request, tier, nodes, running, policy)
            if chosen is not None:
                why = (
                    f"{waiting.user}'s job of tier {tier_name or 'default'} needs its room "
                    f"on {chosen.node}"
                )
                return _commands(chosen, waiting, now_us, [why] * len(chosen.victims))
        if use is not None:
            reclaim = _reclaim(
                state, plan, position, waiting, nodes, running, base_policy, use, now_us
            )
            if reclaim is not None:
                reasons = [
                    _reclaim_reason(lab, use, waiting, victim, reclaim.node)
                    for victim in reclaim.victims
                ]
                return _commands(reclaim, waiting, now_us, reasons)
    return []


def _holders(
    state: ControlState, lab: LabPolicy, policy: scheduler.Policy
) -> list[tuple[str, RunningJob, bool]] | None:
    """Every active assignment as (node, the job as a candidate, whether it is being
    stopped); None while a preemption is under way. A gang counts on each node with
    what its rank there holds: choosing it as a victim stops every rank."""
    found: list[tuple[str, RunningJob, bool]] = []
    for node in state.nodes_with_runs():
        for job in state.active_on(node):
            if job.preempted_by:
                return None
            assignment = job.rank_on(node)
            if assignment is None:
                continue
            found.append(
                (
                    node,
                    RunningJob(
                        job_id=job.id,
                        tier=lab.tier_of(job.queue)[1],
                        started_us=assignment.started_at_us or assignment.assigned_at_us,
                        gpu_indices=assignment.gpu_indices,
                        cpus=policy.default_request.cpus_of(job.spec.cpus),
                        memory_bytes=policy.default_request.memory_of(job.spec.memory_bytes),
                        user=job.user,
                    ),
                    job.stopping,
                )
            )
    return found


def _commands(
    chosen: Preemption, waiting: ClusterJob, now_us: int, reasons: Sequence[str]
) -> list[PreemptJob]:
    """A ``PreemptJob`` per victim, with why it is stopped (its history keeps it)."""
    return [
        PreemptJob(job_id=victim.job_id, by_job=waiting.id, reason=reason, at_us=now_us)
        for victim, reason in zip(chosen.victims, reasons, strict=True)
    ]


def _reclaim(
    state: ControlState,
    plan: ClusterPlan,
    position: int,
    waiting: ClusterJob,
    nodes: Sequence[scheduler.NodeState],
    running: Mapping[str, Sequence[RunningJob]],
    policy: scheduler.Policy,
    use: QuotaUse,
    now_us: int,
) -> Preemption | None:
    """The borrowers to stop so that ``waiting`` (at ``position`` of the plan's
    waiting jobs) gets its group's lent quota back, sparing those that would take
    the room back; None when none would do."""
    lab = state.lab_policy
    request = job_request(waiting)
    tier = lab.tier_of(waiting.queue)[1]
    chosen = reclaim_victims(request, tier, nodes, running, policy, lab, use)
    if chosen is None:
        return None  # (the cheap question first: most passes end here)
    borrowers = [job for job in map(state.job, sorted(use.borrowing)) if job is not None]
    ahead = [job for job in (state.job(entry.job_id) for entry in plan.waiting[:position]) if job]
    policy = effective_policy(
        policy, lab,
        fair_order=fair_share_order(state, [*ahead, *borrowers, waiting], now_us),
        borrowing=frozenset(use.borrowing),
    )  # fmt: skip
    order = [job.id for job in policy.queue_order([*map(job_request, borrowers), request])]
    again = f"preempted by job {waiting.id}: {RECLAIMING}"
    spare = set(order[: order.index(waiting.id)]) | {
        job.id for job in borrowers if any(run.reason.startswith(again) for run in job.past_runs)
    }
    if any(victim.job_id in spare for victim in chosen.victims):
        chosen = reclaim_victims(request, tier, nodes, running, policy, lab, use, spare=spare)
    if chosen is None or not _room_goes_to(state, ahead, waiting, chosen, nodes, policy, now_us):
        return None
    return chosen


RECLAIMING = "reclaiming quota lent by group"


def _reclaim_reason(
    lab: LabPolicy, use: QuotaUse, waiting: ClusterJob, victim: RunningJob, node: str
) -> str:
    lender = lab.group_of(waiting.user)
    borrower = lab.group_of(victim.user)
    assert lender is not None  # reclaim_victims checked both
    assert borrower is not None
    return (
        f"{RECLAIMING} {lender.name}: group {borrower.name} holds "
        f"{use.by_group.get(borrower.name, 0)}/{borrower.gpus} GPUs; {waiting.user}'s job "
        f"needs its room on {node}"
    )


def _room_goes_to(
    state: ControlState,
    ahead: Sequence[ClusterJob],
    waiting: ClusterJob,
    chosen: Preemption,
    nodes: Sequence[scheduler.NodeState],
    policy: scheduler.Policy,
    now_us: int,
) -> bool:
    """Whether, once ``chosen``'s victims ended and were requeued, the next pass
    would place ``waiting``: a plan of the jobs decided up to it (those waiting
    before it, ``ahead``, the victims, and it), on the nodes as they are but for the
    victims, under ``policy`` (the queue order of a real pass) and the quotas. Jobs
    after it in queue order cannot take its room first; other changes by then
    (runs ending, new jobs of higher tiers) are not foreseen."""
    victims = [job for job in map(state.job, (v.job_id for v in chosen.victims)) if job]
    quota = quota_ledger(state)
    if quota is not None:
        for victim in chosen.victims:
            quota.give_back(victim.user, victim.gpus)
    freed = [without(node, chosen.victims) if node.name == chosen.node else node for node in nodes]
    pending = [*ahead, *victims, waiting]
    snapshot = scheduler.ClusterSnapshot(
        nodes=tuple(freed), pending=tuple(map(job_request, pending)), now_us=now_us
    )
    builder = scheduler.PlanBuilder(snapshot, policy=policy, quota=quota)
    while (decided := builder.decide_next()) is not None and decided.id != waiting.id:
        pass
    return any(placement.job_id == waiting.id for placement in builder.plan_with(()).placements)
