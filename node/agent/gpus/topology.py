"""GPU locality reduced to group ids small enough to gossip.

NVML answers per pair of GPUs (joined by NVLink? under one PCIe switch?); the
scheduler only needs, per GPU, which group of near GPUs it belongs to. A group is a
connected component of the "near" pairs: GPUs 0-1 and 1-2 on NVLink make one group
{0, 1, 2}. Its id is its lowest GPU index, so ids are stable and readable. A GPU
near no other is in no group (None), which is also what "NVML could not say"
looks like: a pair counts as near only when NVML said so.
"""

from __future__ import annotations

from collections.abc import Iterable


def group_ids(indices: Iterable[int], near_pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Each GPU of a group of two or more → the group's id (its lowest index).

    Args:
        indices: the GPUs of the node.
        near_pairs: pairs of GPUs known to be near; a pair naming a GPU not in
            ``indices`` is ignored.

    Returns:
        The grouped GPUs only; a GPU near no other is absent.
    """
    parent = {index: index for index in indices}

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first, second in near_pairs:
        if first not in parent or second not in parent:
            continue
        a, b = root(first), root(second)
        if a != b:
            # The lower index becomes the root, so a root is its group's lowest index.
            parent[max(a, b)] = min(a, b)
    roots = {index: root(index) for index in parent}
    sizes: dict[int, int] = {}
    for group in roots.values():
        sizes[group] = sizes.get(group, 0) + 1
    return {index: group for index, group in roots.items() if sizes[group] > 1}


def blocks(first_index: int, count: int, size: int) -> list[tuple[int, int]]:
    """The near pairs of ``count`` GPUs from ``first_index`` in blocks of ``size``
    consecutive indices (each GPU paired with the next one of its block)."""
    return [
        (index, index + 1)
        for index in range(first_index, first_index + count - 1)
        if (index - first_index + 1) % size != 0
    ]
