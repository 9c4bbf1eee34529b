"""Why a job waits, in one sentence a user can act on.

Every reason starts with ``"waiting: "`` and names the constraint that binds,
with numbers from the end of the plan (after this plan's placements)::

    waiting: 4 GPUs asked, 2 free on node-1                     (one schedulable node)
    waiting: no node has 4 free A100 GPUs (best: node-2 with 3)
    waiting: needs 64 GiB memory, most free is 32 GiB on node-2
    waiting: no node has 16 A100 GPUs in all (most: node-2 with 8)
    waiting: dataset imagenet is on node-3, which has 1 free GPU  (locality required)
    waiting: dataset imagenet is on no node
    waiting: no schedulable node (node-1 draining)
    waiting: behind job abc123 (higher priority) in queue default
    waiting: 4 nodes asked for a gang, 2 have room

Across several nodes, "no node has 4 free GPUs" is only said when it holds for
every schedulable node; when no single resource is short everywhere the reason
says no node has them all at once. When a node that is not schedulable could run
the job, the reason ends with it ("; node-3 could run it but is draining").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import Infeasible, check_room_capacity
from murmur.scheduler.leftover import Leftover, Outcome
from murmur.scheduler.room import CPU_EPSILON
from murmur.scheduler.snapshot import JobRequest
from murmur.scheduler.wording import (
    datasets_phrase,
    format_amount,
    format_cpus,
    format_gib,
    gpu_phrase,
    join_names,
)

PREFIX = "waiting: "


def datasets_nowhere(missing: Sequence[str]) -> str:
    """The job names datasets that no node holds."""
    verb = "is" if len(missing) == 1 else "are"
    return f"{PREFIX}{datasets_phrase(missing)} {verb} on no node"


def behind(blocker: JobRequest, job: JobRequest, reserved_from_us: int | None = None) -> str:
    """The job would fit but for room reserved for ``blocker``, ahead of it (from
    ``reserved_from_us``, when the reserver could start: a job that ends by then
    may still go there, given a time limit)."""
    if blocker.priority > job.priority:
        why = "higher priority"
    elif blocker.priority == job.priority and (blocker.submit_order, blocker.submit_rank) < (
        job.submit_order,
        job.submit_rank,
    ):
        why = "submitted earlier"
    else:
        why = "ahead in queue order"
    text = f"{PREFIX}behind job {blocker.id} ({why}) in queue {blocker.queue}"
    if reserved_from_us is not None:
        when = datetime.fromtimestamp(reserved_from_us / 1e6, UTC).strftime("%H:%M UTC")
        limit = "a shorter time limit" if job.time_limit_us else "a time limit"
        text += f", reserved for it from {when} (with {limit} it could run before)"
    return text


def unfit(job: JobRequest, ask: Ask, leftover: Leftover) -> str:
    """Why not enough nodes can take a rank of ``job`` now.

    Args:
        job: the waiting job.
        ask: its ask under the plan's policy.
        leftover: the nodes as the plan leaves them.
    """
    if not leftover.schedulable:
        return _no_schedulable_node(leftover)
    if ask.required_datasets:
        return _dataset_bound(job, ask, leftover.outcomes(ask))
    if ask.nodes > 1 or len(leftover.schedulable) == 1:
        reason = _few_nodes(ask, leftover.outcomes(ask))
    elif leftover.could_run_somewhere(ask):
        reason = _short_now(ask, leftover)
    else:
        reason = _short_in_all(ask, leftover)
    return reason + _closed_but_able(ask, leftover)


def _no_schedulable_node(leftover: Leftover) -> str:
    if not leftover.rooms:
        return f"{PREFIX}no schedulable node (the cluster has no nodes)"
    closed = [
        f"{room.name} {room.unschedulable_reason or 'unschedulable'}" for room in leftover.rooms
    ]
    return f"{PREFIX}no schedulable node ({join_names(closed)})"


def _closed_but_able(ask: Ask, leftover: Leftover) -> str:
    """``"; node-3 could run it but is draining"`` when closed nodes have what it asks."""
    able = [
        room
        for room in leftover.rooms
        if not room.schedulable and check_room_capacity(room, ask) is None
    ]
    if not able:
        return ""
    if len(able) == 1:
        why = able[0].unschedulable_reason or "not schedulable"
        return f"; {able[0].name} could run it but is {why}"
    return f"; {join_names([room.name for room in able])} could run it but are not schedulable"


def _few_nodes(ask: Ask, outcomes: Sequence[Outcome]) -> str:
    """A gang, or a cluster of one schedulable node: speak of nodes one by one."""
    schedulable = [(room, why) for room, why in outcomes if room.schedulable]
    gang = _gang(ask, schedulable)
    if gang is not None:
        return gang
    if len(schedulable) == 1 and schedulable[0][1] is not None:
        return f"{PREFIX}{schedulable[0][1]}"
    rooms = [room for room, _ in schedulable]
    leftover = Leftover(rooms)
    if leftover.could_run_somewhere(ask):
        return _short_now(ask, leftover)
    return _short_in_all(ask, leftover)


def _gang(ask: Ask, schedulable: Sequence[Outcome], where: str = "") -> str | None:
    """The gang phrase, when some nodes could take a rank but not enough."""
    could = [room for room, why in schedulable if why is None or why.transient]
    fits = [room for room, why in schedulable if why is None]
    if ask.nodes <= 1 or not could:
        return None
    asked = f"{PREFIX}{ask.nodes} nodes asked for a gang"
    if len(could) < ask.nodes:
        return f"{asked}, only {len(could)}{where} can run a rank"
    if fits:
        verb = "has" if len(fits) == 1 else "have"
        return f"{asked}, {len(fits)}{where} {verb} room"
    return None


def _short_now(ask: Ask, leftover: Leftover) -> str:
    """Some node could run it one day; say what is short on every node now."""
    if ask.gpus:
        room, free = leftover.most_usable(ask)
        if free < ask.gpus:
            wanted = gpu_phrase(ask.gpus, ask.model, adjective="free")
            best = f"best: {room.name} with {int(free)}" if free else "none has any free"
            return f"{PREFIX}no node has {wanted} ({best})"
    if ask.cpus:
        room, cpus = leftover.most("cpus_free")
        if cpus + CPU_EPSILON < ask.cpus:
            needs, most = format_cpus(ask.cpus), format_amount(cpus)
            return f"{PREFIX}needs {needs}, most free is {most} on {room.name}"
    if ask.memory_bytes:
        room, memory = leftover.most("memory_free")
        if memory < ask.memory_bytes:
            needs, most = format_gib(ask.memory_bytes), format_gib(int(memory))
            return f"{PREFIX}needs {needs} memory, most free is {most} on {room.name}"
    return f"{PREFIX}no node has {_together(ask, adjective='free')} at once"


def _short_in_all(ask: Ask, leftover: Leftover) -> str:
    """No schedulable node can ever run it as the cluster stands."""
    if ask.gpus:
        room, total = leftover.most_matching(ask.model_lower)
        if total == 0 and ask.model:
            return f"{PREFIX}no node has {ask.model} GPUs"
        if total < ask.gpus:
            wanted = gpu_phrase(ask.gpus, ask.model)
            return f"{PREFIX}no node has {wanted} in all (most: {room.name} with {int(total)})"
    if ask.cpus:
        room, cpus = leftover.most("cpus_total")
        if cpus + CPU_EPSILON < ask.cpus:
            most = format_amount(cpus)
            return (
                f"{PREFIX}needs {format_cpus(ask.cpus)}, "
                f"the most any node has is {most} ({room.name})"
            )
    if ask.memory_bytes:
        room, memory = leftover.most("memory_total")
        if memory < ask.memory_bytes:
            most = format_gib(int(memory))
            return (
                f"{PREFIX}needs {format_gib(ask.memory_bytes)} memory, "
                f"the most any node has is {most} ({room.name})"
            )
    return f"{PREFIX}no node has {_together(ask)} in all"


def _together(ask: Ask, *, adjective: str = "") -> str:
    """``"4 free GPUs, 16 free CPUs and 64 GiB memory"``: every resource asked."""
    parts = []
    if ask.gpus:
        parts.append(gpu_phrase(ask.gpus, ask.model, adjective=adjective))
    if ask.cpus:
        parts.append(format_cpus(ask.cpus, adjective=adjective))
    if ask.memory_bytes or not parts:
        parts.append(f"{format_gib(ask.memory_bytes)} memory")
    return join_names(parts)


def _dataset_bound(job: JobRequest, ask: Ask, outcomes: Sequence[Outcome]) -> str:
    """Locality is required: explain in terms of the nodes that hold the data."""
    names = sorted(ask.required_datasets)
    data = datasets_phrase(names)
    verb = "is" if len(names) == 1 else "are"
    holding = [(room, why) for room, why in outcomes if ask.required_datasets <= room.datasets]
    if not holding:
        if len(names) == 1:
            return datasets_nowhere(names)
        return f"{PREFIX}no node holds all of {data}"
    holding_schedulable = [(room, why) for room, why in holding if room.schedulable]
    gang = _gang(ask, holding_schedulable, where=f" with {data}")
    if gang is not None:
        return gang
    if len(holding) == 1:
        room, why = holding[0]
        return f"{PREFIX}{data} {verb} on {room.name}, which {_clause(why)}"
    listed = [f"{room.name} ({_clause(why)})" for room, why in holding]
    return f"{PREFIX}{data} {verb} on {join_names(listed)}"


def _clause(why: Infeasible | None) -> str:
    return "has room" if why is None else why.clause()
