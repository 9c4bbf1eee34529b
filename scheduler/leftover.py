"""What is left at the end of a plan, summarised once for every waiting reason.

Reasons quote maxima ("best: node-2 with 3", "most free is 32 GiB on node-2").
After the last placement nothing changes any more, so each maximum is computed
once per GPU model (and share flag) and reused for every waiting job, instead of
re-checking every node for every job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import Infeasible, check_room
from murmur.scheduler.room import CPU_EPSILON, NodeRoom

Best = tuple[NodeRoom, float]
"""A room and its amount of something: the most of it on any schedulable node."""

Outcome = tuple[NodeRoom, Infeasible | None]
"""A node and why one rank does not fit there now (None: it fits)."""

Amount = Literal["cpus_free", "memory_free", "cpus_total", "memory_total"]
"""A per-node quantity ``Leftover.most`` can maximise."""


class Leftover:
    """The rooms at the end of a plan, with cached maxima over the schedulable ones."""

    __slots__ = ("_capacities", "_fixed", "_totals", "_usable", "rooms", "schedulable")

    def __init__(self, rooms_by_name: Sequence[NodeRoom]) -> None:
        self.rooms = list(rooms_by_name)
        self.schedulable = [room for room in self.rooms if room.schedulable]
        self._usable: dict[tuple[str, bool], Best] = {}
        self._totals: dict[str, Best] = {}
        self._capacities: dict[str, list[tuple[int, float, int]]] = {}
        self._fixed: dict[str, Best] = {}

    def outcomes(self, ask: Ask) -> list[Outcome]:
        """Every node, name order, with why one rank of ``ask`` does not fit (slow path)."""
        return [(room, check_room(room, ask)) for room in self.rooms]

    def most(self, what: Amount) -> Best:
        """The most ``cpus_free``, ``memory_free``, ``cpus_total`` or ``memory_total``."""
        best = self._fixed.get(what)
        if best is None:
            best = _best(self.schedulable, lambda room: float(getattr(room, what)))
            self._fixed[what] = best
        return best

    def most_usable(self, ask: Ask) -> Best:
        """The most GPUs ``ask`` (its model, its share flag) could use now on one node."""
        key = (ask.model_lower, ask.share)
        best = self._usable.get(key)
        if best is None:
            best = _best(self.schedulable, lambda room: room.usable_count(ask))
            self._usable[key] = best
        return best

    def most_matching(self, model_lower: str) -> Best:
        """The most GPUs of the model on one node, free or not."""
        best = self._totals.get(model_lower)
        if best is None:
            best = _best(self.schedulable, lambda room: room.matching_count(model_lower))
            self._totals[model_lower] = best
        return best

    def could_run_somewhere(self, ask: Ask) -> bool:
        """Whether some schedulable node has what one rank needs, in all (static rules).

        Checked against the distinct (GPUs of the model, CPUs, memory) capacities,
        of which a lab has few.
        """
        capacities = self._capacities.get(ask.model_lower)
        if capacities is None:
            capacities = sorted(
                {
                    (room.matching_count(ask.model_lower), room.cpus_total, room.memory_total)
                    for room in self.schedulable
                }
            )
            self._capacities[ask.model_lower] = capacities
        return any(
            gpus >= ask.gpus and cpus + CPU_EPSILON >= ask.cpus and memory >= ask.memory_bytes
            for gpus, cpus, memory in capacities
        )

    def might_fit(self, ask: Ask) -> bool:
        """False when no single resource is free enough on any node (fast, no scan)."""
        if ask.gpus and self.most_usable(ask)[1] < ask.gpus:
            return False
        if ask.cpus and self.most("cpus_free")[1] + CPU_EPSILON < ask.cpus:
            return False
        return not (ask.memory_bytes and self.most("memory_free")[1] < ask.memory_bytes)


def _best(rooms: Sequence[NodeRoom], amount: Callable[[NodeRoom], float]) -> Best:
    """The room with the most of ``amount``, first name on ties; rooms are name-sorted."""
    best_room = rooms[0]
    best_amount = amount(best_room)
    for room in rooms[1:]:
        value = amount(room)
        if value > best_amount:
            best_room, best_amount = room, value
    return best_room, best_amount
