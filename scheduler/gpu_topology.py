"""Which GPUs of a node are near each other, and a rank's GPUs chosen close together.

A node may say which of its GPUs are near (``GpuState.nvlink_group`` and
``pcie_group``: GPUs joined by NVLink; GPUs under one PCIe switch). For a rank of
k GPUs, ``choose_near`` picks from the usable free GPUs, first that applies:

1. k GPUs inside one NVLink group; within it, inside one PCIe switch if it can;
2. k GPUs inside one PCIe switch;
3. the shortest run of consecutive indices that holds k (``shortest_run``), else
   the lowest indices: what a node that says nothing of its topology gets.

Among the groups that can hold the rank, the one with the fewest free GPUs wins
(best fit, as for nodes), then one some job already uses over an intact one, then
the one with the lowest free index. So small jobs fill groups already broken into,
and intact groups stay whole for the big jobs that need a connected set. A GPU in
no group counts as a group of one: a 1-GPU job takes it before breaking a group.

Cheap by construction: one pass over the free GPUs per level, no search over sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from murmur.scheduler.snapshot import GpuState


@dataclass(frozen=True, slots=True)
class GroupLevel:
    """One kind of nearness on one node: each grouped GPU's group, and group sizes.

    Attributes:
        group_of: GPU index → its group; GPUs in no group are absent.
        size_of: group → how many GPUs of the node are in it, free or not.
    """

    group_of: Mapping[int, int]
    size_of: Mapping[int, int]

    @classmethod
    def of(cls, groups: Iterable[tuple[int, int | None]]) -> GroupLevel:
        """The level of ``(index, group or None)`` pairs."""
        group_of = {index: group for index, group in groups if group is not None}
        size_of: dict[int, int] = {}
        for group in group_of.values():
            size_of[group] = size_of.get(group, 0) + 1
        return cls(group_of, size_of)

    def best_group(self, candidates: Sequence[int], count: int) -> list[int] | None:
        """The candidates of the group that best fits ``count`` of them (see the
        module doc), ascending; None when no group holds ``count`` candidates.

        Args:
            candidates: usable free GPU indices, ascending.
            count: GPUs wanted, at least 1.
        """
        group_of = self.group_of
        members: dict[int, list[int]] = {}
        alone = -1
        for index in candidates:
            group = group_of.get(index)
            if group is None:
                if alone < 0:
                    alone = index
            else:
                found = members.get(group)
                if found is None:
                    members[group] = [index]
                else:
                    found.append(index)
        best: list[int] | None = None
        best_key: tuple[int, bool, int] | None = None
        for group, free in members.items():
            if len(free) < count:
                continue
            key = (len(free), len(free) == self.size_of[group], free[0])
            if best_key is None or key < best_key:
                best, best_key = free, key
        if count == 1 and alone >= 0 and (best_key is None or (1, True, alone) < best_key):
            best = [alone]
        return best


@dataclass(frozen=True, slots=True)
class GpuTopology:
    """The nearness a node reports for its GPUs: NVLink groups, then PCIe switches.

    Attributes:
        nvlink: GPUs joined by NVLink.
        pcie: GPUs under one PCIe switch.
    """

    nvlink: GroupLevel
    pcie: GroupLevel

    @classmethod
    def of(cls, gpus: Sequence[GpuState]) -> GpuTopology:
        """The topology of a node's GPUs (``NO_TOPOLOGY`` when none is in a group)."""
        if all(gpu.nvlink_group is None and gpu.pcie_group is None for gpu in gpus):
            return NO_TOPOLOGY
        return cls(
            GroupLevel.of((gpu.index, gpu.nvlink_group) for gpu in gpus),
            GroupLevel.of((gpu.index, gpu.pcie_group) for gpu in gpus),
        )


NO_TOPOLOGY = GpuTopology(GroupLevel({}, {}), GroupLevel({}, {}))
"""A node that says nothing of which GPUs are near: ``choose_near`` is ``shortest_run``."""


def choose_near(candidates: Sequence[int], count: int, topology: GpuTopology) -> tuple[int, ...]:
    """``count`` of the ascending ``candidates``, as close together as ``topology``
    tells (see the module doc); ascending.

    With fewer than ``count`` candidates, all of them (the caller checked it fits).
    """
    if count <= 0:
        return ()
    if topology is NO_TOPOLOGY or count > len(candidates):
        return shortest_run(candidates, count)
    nvlink, pcie = topology.nvlink, topology.pcie
    if nvlink.group_of:
        island = nvlink.best_group(candidates, count)
        if island is not None:
            if pcie.group_of and len(island) > count:
                switch = pcie.best_group(island, count)
                if switch is not None:
                    return shortest_run(switch, count)
            return shortest_run(island, count)
    if pcie.group_of:
        switch = pcie.best_group(candidates, count)
        if switch is not None:
            return shortest_run(switch, count)
    return shortest_run(candidates, count)


def shortest_run(candidates: Sequence[int], count: int) -> tuple[int, ...]:
    """``count`` indices from ascending ``candidates``: the start of the shortest run of
    consecutive indices that holds them (lowest on ties), else the lowest ones."""
    if count <= 0:
        return ()
    best_start = -1
    best_length = 0
    start = 0
    for position in range(1, len(candidates) + 1):
        if position == len(candidates) or candidates[position] != candidates[position - 1] + 1:
            length = position - start
            if length >= count and (best_start < 0 or length < best_length):
                best_start, best_length = start, length
            start = position
    if best_start < 0:
        return tuple(candidates[:count])
    return tuple(candidates[best_start : best_start + count])
