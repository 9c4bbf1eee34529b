"""The planner's working copy of one node's free resources.

A plan hands out resources one job at a time; each ``NodeRoom`` starts from a
``NodeState`` and shrinks as ranks are placed on it, so nothing is given twice in
one plan. GPUs are in one of three states:

- free: no holder; usable by any job whose model constraint matches;
- shared: every holder asked to share; usable by sharing jobs only;
- busy: held by at least one exclusive job; usable by nobody.

A sharing job placed on a free GPU turns it shared; an exclusive job turns it busy.

``wanted_datasets`` are the node's datasets some pending job names (all of them
unless the planner narrows it): ranking keeps jobs that do not need them elsewhere.
"""

from __future__ import annotations

from bisect import insort

from murmur.scheduler.ask import Ask
from murmur.scheduler.gpu_topology import GpuTopology
from murmur.scheduler.snapshot import NodeState

CPU_EPSILON = 1e-9
"""Slack for float CPU sums: 0.1 + 0.2 CPUs must fit in 0.3 free."""


class NodeRoom:
    """Free GPUs, CPUs and memory of one node, mutable while a plan is built."""

    __slots__ = (
        "_matching",
        "_topology",
        "choices",
        "cpus_free",
        "cpus_total",
        "datasets",
        "free",
        "gpu_count",
        "index_free",
        "index_shareable",
        "memory_free",
        "memory_total",
        "name",
        "placed",
        "schedulable",
        "shared",
        "spread",
        "state",
        "unschedulable_reason",
        "wanted_datasets",
    )

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.name = state.name
        self.schedulable = state.schedulable
        self.unschedulable_reason = state.unschedulable_reason
        self.datasets = state.datasets
        self.wanted_datasets = state.datasets
        self.cpus_total = state.cpus_total
        self.cpus_free = state.cpus_free
        self.memory_total = state.memory_total_bytes
        self.memory_free = state.memory_free_bytes
        self.gpu_count = len(state.gpus)
        self.free: list[int] = sorted(gpu.index for gpu in state.gpus if not gpu.holders)
        self.shared: list[int] = sorted(
            gpu.index for gpu in state.gpus if gpu.holders and gpu.shared
        )
        self.placed: set[int] = set()
        """GPUs handed to jobs of this plan (which hold them past any ``releases``)."""
        self.spread = state.spread
        """Jobs of each spread group here, this plan's included (copied on first write)."""
        # Where RoomIndex filed this room; kept here to spare a dict of tuples.
        self.index_free = -1
        self.index_shareable = -1
        # Built on first use: a plan builds a room per node, and allocations it does
        # not need wake the garbage collector, whose full passes cost milliseconds.
        self._matching: dict[str, frozenset[int]] | None = None
        self._topology: GpuTopology | None = None
        # (gpus, model, share) → the GPUs ``ranking.choose_indices`` picked for such a
        # rank since the room last changed: reservations ask again for every job.
        self.choices: dict[tuple[int, str, bool], tuple[int, ...]] | None = None

    def matching(self, model_lower: str) -> frozenset[int]:
        """Indices of the GPUs whose model contains ``model_lower`` (any state)."""
        if self._matching is None:
            self._matching = {}
        found = self._matching.get(model_lower)
        if found is None:
            found = frozenset(
                gpu.index for gpu in self.state.gpus if model_lower in gpu.model.lower()
            )
            self._matching[model_lower] = found
        return found

    def topology(self) -> GpuTopology:
        """Which GPUs of the node are near each other (read on first use)."""
        if self._topology is None:
            self._topology = GpuTopology.of(self.state.gpus)
        return self._topology

    def matching_count(self, model_lower: str) -> int:
        """How many GPUs of the model the node has, free or not."""
        return len(self.matching(model_lower)) if model_lower else self.gpu_count

    def models_present(self) -> tuple[str, ...]:
        """The distinct GPU models of the node, sorted."""
        return tuple(sorted({gpu.model for gpu in self.state.gpus}))

    def usable(self, ask: Ask) -> list[int]:
        """Indices ``ask`` may use now, ascending: free ones, plus shared ones if it shares."""
        candidates = sorted(self.free + self.shared) if ask.share else self.free
        if not ask.model_lower:
            return list(candidates)
        matching = self.matching(ask.model_lower)
        return [index for index in candidates if index in matching]

    def usable_count(self, ask: Ask) -> int:
        """How many GPUs ``ask`` may use now (``len(usable(ask))`` without the list)."""
        if not ask.model_lower:
            return len(self.free) + len(self.shared) if ask.share else len(self.free)
        matching = self.matching(ask.model_lower)
        count = sum(1 for index in self.free if index in matching)
        if ask.share:
            count += sum(1 for index in self.shared if index in matching)
        return count

    def add_to_spread(self, group: str) -> None:
        """One more job of spread ``group`` runs here (placed by this plan)."""
        counts = dict(self.spread)
        counts[group] = counts.get(group, 0) + 1
        self.spread = counts

    def take(self, ask: Ask, gpu_indices: tuple[int, ...]) -> None:
        """Hand one rank of ``ask`` the given GPUs and its CPUs and memory."""
        self.choices = None
        self.placed.update(gpu_indices)
        for index in gpu_indices:
            if index in self.free:
                self.free.remove(index)
                if ask.share:
                    insort(self.shared, index)
            elif not (ask.share and index in self.shared):
                raise AssertionError(f"GPU {index} of {self.name} is not usable by this job")
        self.cpus_free = max(0.0, self.cpus_free - ask.cpus)
        self.memory_free -= ask.memory_bytes
