"""Which running jobs to stop so that a job of a higher tier fits (pure).

The leader asks this for a waiting job only when the lab policy lets tiers preempt
(``[preemption] tiers = true``). Candidates are the running jobs of strictly lower
tiers; on each node they are taken lowest tier first, then the most recently
started (the least work lost): one alone when one suffices, else as many as it
takes, in that order, until one rank of the job fits, less any of them that the
others make unneeded (so no victim is stopped for nothing). The node needing the
fewest victims wins (then the lowest tiers, then the least work lost, then the
name). Single-node jobs only: a gang is never placed by preemption yet.

``fewest_victims`` is the same choice over any set of candidates: reclaiming lent
quota (``scheduler.reclaim``) uses it with the jobs that borrow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    user: str = ""
    """Who submitted it (whose quota it counts against)."""

    @property
    def gpus(self) -> int:
        """GPUs it holds, a shared one counting whole (as quotas count them)."""
        return len(self.gpu_indices)


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
    return fewest_victims(job, nodes, running, policy, lambda victim: victim.tier < tier)


def fewest_victims(
    job: JobRequest,
    nodes: Sequence[NodeState],
    running: Mapping[str, Sequence[RunningJob]],
    policy: Policy,
    may_stop: Callable[[RunningJob], bool],
) -> Preemption | None:
    """The fewest running jobs that ``may_stop`` allows, on one node, whose end lets
    one rank of ``job`` fit there; none of them needless. None when no node can be
    freed that way, or ``job`` is a gang."""
    if job.nodes != 1:
        return None
    ask = Ask.of(job, policy.dataset_locality, policy.default_request)
    best: tuple[tuple[object, ...], Preemption] | None = None
    for node in nodes:
        if not node.schedulable:
            continue
        candidates = sorted(
            (victim for victim in running.get(node.name, ()) if may_stop(victim)),
            key=lambda victim: (victim.tier, -victim.started_us, victim.job_id),
        )
        if not candidates or check_room(NodeRoom(node), ask) is None:
            continue  # nothing to stop, or it fits as it is: no victim is needed here
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
    the shortest prefix of ``candidates`` that makes room, less every one of them
    the others make unneeded; None when no prefix does."""
    for victim in candidates:
        if _fits_without(node, [victim], ask):
            return [victim]
    chosen: list[RunningJob] = []
    for victim in candidates:
        chosen.append(victim)
        if _fits_without(node, chosen, ask):
            break
    else:
        return None
    # The last one is needed (the prefix before it was not enough). Of the others,
    # try to spare the ones preferred least as victims first. Room only grows with
    # more victims, so one pass leaves none that could be spared.
    for victim in reversed(chosen[:-1]):
        rest = [other for other in chosen if other is not victim]
        if _fits_without(node, rest, ask):
            chosen = rest
    return chosen


def _fits_without(node: NodeState, victims: Sequence[RunningJob], ask: Ask) -> bool:
    return check_room(NodeRoom(without(node, victims)), ask) is None


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
