"""Can this node run one rank of this job, and if not, why not?

Feasibility is separate from ranking (which feasible node is best, ``ranking``)
and from the plan (who goes first, ``plan``). ``check_node`` answers for one node
with ``None`` (a rank fits now) or one ``Infeasible`` value that names the first
rule broken, checked in this order:

1. the node is schedulable;
2. it holds every dataset the job names (only under ``DatasetLocality.REQUIRE``);
3. it has enough GPUs of the asked model at all, free or not;
4. it has enough CPUs and memory at all;
5. enough of those GPUs are usable now;
6. enough CPUs and memory are free now.

Rules 1-4 are *static*: the node cannot run the job as it stands, however long the
job waits. Rules 5-6 are *transient* (``Infeasible.transient``): the job could run
there once running jobs finish. Only transient refusals make a job worth reserving
room for.

Which GPUs are usable ("free") for a job:

- an exclusive job (``gpu_share=False``) may use a GPU that has no holders;
- a sharing job may use a GPU that has no holders, or whose holders all share
  (``GpuState.shared``);
- either way the GPU's model must contain ``gpu_model``, case-insensitively.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from murmur.scheduler.ask import Ask
from murmur.scheduler.policy import DatasetLocality
from murmur.scheduler.room import CPU_EPSILON, NodeRoom
from murmur.scheduler.snapshot import JobRequest, NodeState
from murmur.scheduler.wording import (
    datasets_phrase,
    format_amount,
    format_cpus,
    format_gib,
    gpu_phrase,
    join_names,
)


@dataclass(frozen=True, slots=True)
class Infeasible(abc.ABC):
    """Why one rank of a job cannot go to one node; ``str()`` is the user's phrase.

    Attributes:
        node: the node's name.
    """

    transient: ClassVar[bool] = False
    """True when the job could run on the node once running jobs free resources."""

    node: str

    @abc.abstractmethod
    def phrase(self) -> str:
        """A sentence fragment naming the node, e.g. ``"4 GPUs asked, 2 free on node-1"``."""

    @abc.abstractmethod
    def clause(self) -> str:
        """What the node has, to follow "node-3, which ...", e.g. ``"has 1 free GPU"``."""

    def __str__(self) -> str:
        return self.phrase()


@dataclass(frozen=True, slots=True)
class NodeUnschedulable(Infeasible):
    """The node takes no new jobs (draining, cordoned...)."""

    reason: str

    def phrase(self) -> str:
        return f"{self.node} {self.clause()}"

    def clause(self) -> str:
        return f"is not schedulable ({self.reason})" if self.reason else "is not schedulable"


@dataclass(frozen=True, slots=True)
class DatasetAbsent(Infeasible):
    """The node lacks datasets the job must run next to."""

    datasets: tuple[str, ...]

    def phrase(self) -> str:
        verb = "is" if len(self.datasets) == 1 else "are"
        return f"{datasets_phrase(self.datasets)} {verb} not on {self.node}"

    def clause(self) -> str:
        return f"does not hold {datasets_phrase(self.datasets)}"


@dataclass(frozen=True, slots=True)
class GpuModelAbsent(Infeasible):
    """The node has no GPU of the asked model."""

    model: str
    models_present: tuple[str, ...]

    def phrase(self) -> str:
        has = f"it has {join_names(self.models_present)}" if self.models_present else "no GPUs"
        return f"{self.model} GPUs asked, {self.node} has none ({has})"

    def clause(self) -> str:
        return f"has no {self.model} GPUs"


@dataclass(frozen=True, slots=True)
class TooFewGpus(Infeasible):
    """The node has fewer GPUs of the asked model than one rank needs, in all."""

    asked: int
    total: int
    model: str

    def phrase(self) -> str:
        return f"{gpu_phrase(self.asked, self.model)} asked, {self.node} has {self.total} in all"

    def clause(self) -> str:
        return f"has {gpu_phrase(self.total, self.model)} in all"


@dataclass(frozen=True, slots=True)
class TooFewCpus(Infeasible):
    """The node has fewer CPUs than one rank needs, in all."""

    asked: float
    total: float

    def phrase(self) -> str:
        return (
            f"{format_cpus(self.asked)} asked, {self.node} has {format_amount(self.total)} in all"
        )

    def clause(self) -> str:
        return f"has {format_cpus(self.total)} in all"


@dataclass(frozen=True, slots=True)
class TooLittleMemory(Infeasible):
    """The node has less memory than one rank needs, in all."""

    asked: int
    total: int

    def phrase(self) -> str:
        asked, total = format_gib(self.asked), format_gib(self.total)
        return f"{asked} memory asked, {self.node} has {total} in all"

    def clause(self) -> str:
        return f"has {format_gib(self.total)} memory in all"


@dataclass(frozen=True, slots=True)
class GpusBusy(Infeasible):
    """Enough GPUs of the model exist on the node, but too few are usable now."""

    transient: ClassVar[bool] = True
    asked: int
    free: int
    model: str

    def phrase(self) -> str:
        return f"{gpu_phrase(self.asked, self.model)} asked, {self.free} free on {self.node}"

    def clause(self) -> str:
        return f"has {gpu_phrase(self.free, self.model, adjective='free')}"


@dataclass(frozen=True, slots=True)
class CpusBusy(Infeasible):
    """Enough CPUs exist on the node, but too few are free now."""

    transient: ClassVar[bool] = True
    asked: float
    free: float

    def phrase(self) -> str:
        return f"{format_cpus(self.asked)} asked, {format_amount(self.free)} free on {self.node}"

    def clause(self) -> str:
        return f"has {format_cpus(self.free, adjective='free')}"


@dataclass(frozen=True, slots=True)
class MemoryBusy(Infeasible):
    """Enough memory exists on the node, but too little is free now."""

    transient: ClassVar[bool] = True
    asked: int
    free: int

    def phrase(self) -> str:
        return f"{format_gib(self.asked)} memory asked, {format_gib(self.free)} free on {self.node}"

    def clause(self) -> str:
        return f"has {format_gib(self.free)} memory free"


def check_node(
    node: NodeState,
    job: JobRequest,
    *,
    dataset_locality: DatasetLocality = DatasetLocality.PREFER,
) -> Infeasible | None:
    """Whether one rank of ``job`` fits on ``node`` now.

    Args:
        node: the node as the snapshot shows it.
        job: the pending job; its resources are per rank.
        dataset_locality: REQUIRE makes a missing dataset a refusal.

    Returns:
        None when a rank fits; otherwise the first rule broken (see module doc).
    """
    return check_room(NodeRoom(node), Ask.of(job, dataset_locality))


def usable_gpu_indices(node: NodeState, job: JobRequest) -> tuple[int, ...]:
    """Indices of the GPUs of ``node`` that ``job`` may use now, ascending."""
    return tuple(NodeRoom(node).usable(Ask.of(job, DatasetLocality.PREFER)))


def check_room(room: NodeRoom, ask: Ask) -> Infeasible | None:
    """``check_node`` on the planner's working copy of a node."""
    if not room.schedulable:
        return NodeUnschedulable(room.name, room.unschedulable_reason)
    if ask.required_datasets and not ask.required_datasets <= room.datasets:
        return DatasetAbsent(room.name, tuple(sorted(ask.required_datasets - room.datasets)))
    refusal = check_room_capacity(room, ask)
    if refusal is not None:
        return refusal
    return check_room_free(room, ask)


def check_room_capacity(room: NodeRoom, ask: Ask) -> Infeasible | None:
    """Rules 3-4: does the node have what one rank needs at all, free or not."""
    if ask.gpus:
        total = room.matching_count(ask.model_lower)
        if total == 0 and ask.model_lower:
            return GpuModelAbsent(room.name, ask.model, room.models_present())
        if total < ask.gpus:
            return TooFewGpus(room.name, ask.gpus, total, ask.model)
    if room.cpus_total + CPU_EPSILON < ask.cpus:
        return TooFewCpus(room.name, ask.cpus, room.cpus_total)
    if room.memory_total < ask.memory_bytes:
        return TooLittleMemory(room.name, ask.memory_bytes, room.memory_total)
    return None


def check_room_free(room: NodeRoom, ask: Ask) -> Infeasible | None:
    """Rules 5-6: is enough of it free now."""
    if ask.gpus:
        usable = room.usable_count(ask)
        if usable < ask.gpus:
            return GpusBusy(room.name, ask.gpus, usable, ask.model)
    if room.cpus_free + CPU_EPSILON < ask.cpus:
        return CpusBusy(room.name, ask.cpus, room.cpus_free)
    if room.memory_free < ask.memory_bytes:
        return MemoryBusy(room.name, ask.memory_bytes, room.memory_free)
    return None
