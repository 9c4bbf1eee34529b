"""Which running jobs to stop so that a job of a higher tier fits (pure).

The leader asks this for a waiting job only when the lab policy lets tiers preempt
(``[preemption] tiers = true``). Candidates are the running jobs of strictly lower
tiers; on each node they are taken lowest tier first, then the most recently
started (the least work lost): one alone when one suffices, else as many as it
takes, in that order, until one rank of the job fits. The node needing
the fewest victims wins (then the lowest tiers, then the least work lost, then the
name). Single-node jobs only: a gang is never placed by preemption yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import check_room
from murmur.scheduler.policy import Policy
from murmur.scheduler.room import NodeRoom
from murmur.scheduler.snapshot import JobRequest, NodeState


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A running job that might be preempted, on one node."""

    job_id: str
    tier: int
    """Its tier's rank (higher runs first)."""
    started_us: int
    gpu_indices: tuple[int, ...]
    cpus: float
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class Preemption:
    """Stop ``victims`` on ``node`` and ``job`` fits there."""

    job_id: str
    node: str
    victims: tuple[RunningJob, ...]


def choose_victims(
    job: JobRequest,
    tier: int,
    nodes: Sequence[NodeState],
    running: Mapping[str, Sequence[RunningJob]],
    policy: Policy,
) -> Preemption | None:
    """The fewest lower-tier jobs to stop so that one rank of ``job`` fits on one
    node; None when no node can be freed for it that way (or it is a gang)."""
    if job.nodes != 1:
        return None
    ask = Ask.of(job, policy.dataset_locality, policy.default_request)
    best: tuple[tuple[object, ...], Preemption] | None = None
    for node in nodes:
        if not node.schedulable:
            continue
        candidates = sorted(
            (victim for victim in running.get(node.name, ()) if victim.tier < tier),
            key=lambda victim: (victim.tier, -victim.started_us, victim.job_id),
        )
        chosen = _victims_on(node, candidates, ask)
        if chosen is None:
            continue
        cost = (
            len(chosen),
            max(v.tier for v in chosen),
            -min(v.started_us for v in chosen),
            node.name,
        )
        if best is None or cost < best[0]:
            best = (cost, Preemption(job.id, node.name, tuple(chosen)))
    return best[1] if best is not None else None


def _victims_on(
    node: NodeState, candidates: Sequence[RunningJob], ask: Ask
) -> list[RunningJob] | None:
    """One candidate alone when one suffices (the first in preference order), else
    the shortest prefix of ``candidates`` that makes room; None when none does."""
    for victim in candidates:
        if check_room(NodeRoom(without(node, [victim])), ask) is None:
            return [victim]
    chosen: list[RunningJob] = []
    for victim in candidates:
        chosen.append(victim)
        if check_room(NodeRoom(without(node, chosen)), ask) is None:
            return chosen
    return None


def without(node: NodeState, victims: Sequence[RunningJob]) -> NodeState:
    """``node`` as it would be once ``victims`` ended."""
    gone = {victim.job_id for victim in victims}
    gpus = tuple(
        replace(gpu, holders=tuple(h for h in gpu.holders if h not in gone))
        if gpu.holders and gone.intersection(gpu.holders)
        else gpu
        for gpu in node.gpus
    )
    return replace(
        node,
        gpus=gpus,
        cpus_free=min(node.cpus_total, node.cpus_free + sum(v.cpus for v in victims)),
        memory_free_bytes=min(
            node.memory_total_bytes, node.memory_free_bytes + sum(v.memory_bytes for v in victims)
        ),
        releases=tuple(r for r in node.releases if r.job_id not in gone),
    )
