"""Preemption by tier: which running jobs the leader stops for a waiting job.

Only with ``[preemption] tiers = true`` in the lab policy (scheduler/lab_policy.py).
After a placement pass, the leader looks at the first waiting jobs in queue order
(tiers first); for the first one that running jobs of strictly lower tiers keep
out (``scheduler.preemption.choose_victims``), it commits a ``PreemptJob`` per
victim. Each victim's node is told at once, as for a cancel: SIGTERM, then SIGKILL
after the node's ``stop_grace_seconds`` (the run sees that grace in
``MURMUR_STOP_GRACE_SECONDS``, to checkpoint); the run's end requeues the victim
with its attempt unspent, and the freed room goes to the waiting job at the next
pass (it is first in queue order among those that could take it).

One preemption at a time: while any victim is still being stopped, nothing more is
preempted, so a plan made before the room was freed never preempts twice for one
job. Equal tiers never preempt each other; a job held by a quota, or asking for a
gang, never preempts.
"""

from __future__ import annotations

from collections.abc import Sequence

from murmur import scheduler
from murmur.node.control.leader.placement import (
    ClusterPlan,
    NodeOffer,
    current_node_states,
    effective_policy,
    job_request,
    runtime_of,
)
from murmur.node.control.queue.commands import PreemptJob
from murmur.node.control.queue.state import ControlState
from murmur.scheduler.preemption import RunningJob, choose_victims

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
    """The commands that free room for the first waiting job that lower tiers keep
    out; empty when preemption is off, under way, or would not help."""
    lab = state.lab_policy
    if not lab.preempt_tiers or not plan.waiting:
        return []
    policy = effective_policy(policy, lab)
    running: dict[str, list[RunningJob]] = {}
    for node in state.nodes_with_runs():
        for job in state.active_on(node):
            if job.preempted_by:
                return []  # one at a time
            assignment = job.assignment
            if assignment is None or job.cancel_requested:
                continue
            running.setdefault(node, []).append(
                RunningJob(
                    job_id=job.id,
                    tier=lab.tier_of(job.queue)[1],
                    started_us=assignment.started_at_us or assignment.assigned_at_us,
                    gpu_indices=assignment.gpu_indices,
                    cpus=policy.default_request.cpus_of(job.spec.cpus),
                    memory_bytes=policy.default_request.memory_of(job.spec.memory_bytes),
                )
            )
    if not running:
        return []
    lowest = min(victim.tier for victims in running.values() for victim in victims)
    nodes_by_runtime: dict[str, list[scheduler.NodeState]] = {}
    for entry in plan.waiting[:LOOKAHEAD]:
        waiting = state.job(entry.job_id)
        if waiting is None or waiting.spec.nodes > 1 or entry.reason.startswith("quota:"):
            continue
        tier_name, tier = lab.tier_of(waiting.queue)
        if tier <= lowest:
            continue
        runtime = runtime_of(waiting.spec)
        nodes = nodes_by_runtime.get(runtime)
        if nodes is None:
            nodes = nodes_by_runtime[runtime] = current_node_states(state, offers, policy, runtime)
        chosen = choose_victims(job_request(waiting), tier, nodes, running, policy)
        if chosen is None:
            continue
        return [
            PreemptJob(
                job_id=victim.job_id,
                by_job=waiting.id,
                reason=(
                    f"{waiting.user}'s job of tier {tier_name or 'default'} needs its room "
                    f"on {chosen.node}"
                ),
                at_us=now_us,
            )
            for victim in chosen.victims
        ]
    return []
