"""Rooms bucketed by how many GPUs they have usable, so a scan skips full nodes.

Once a cluster is busy most nodes have few GPUs free; a 4-GPU job need not look
at the nodes with 3 or fewer. The index keeps two bucket arrays: by free (unheld)
GPUs, which bounds what an exclusive job can use, and by free plus shared GPUs,
which bounds what a sharing job can use. Unschedulable nodes are not indexed:
nothing goes there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from murmur.scheduler.ask import Ask
from murmur.scheduler.room import NodeRoom


class RoomIndex:
    """Schedulable rooms by usable GPU count; call ``moved`` after a room's GPUs change."""

    __slots__ = ("_by_free", "_by_shareable")

    def __init__(self, rooms: Sequence[NodeRoom]) -> None:
        schedulable = [room for room in rooms if room.schedulable]
        most = max((room.gpu_count for room in schedulable), default=0)
        self._by_free: list[set[NodeRoom]] = [set() for _ in range(most + 1)]
        self._by_shareable: list[set[NodeRoom]] = [set() for _ in range(most + 1)]
        for room in schedulable:
            self._add(room)

    def _add(self, room: NodeRoom) -> None:
        free = len(room.free)
        shareable = free + len(room.shared)
        self._by_free[free].add(room)
        self._by_shareable[shareable].add(room)
        room.index_free = free
        room.index_shareable = shareable

    def moved(self, room: NodeRoom) -> None:
        """Re-bucket ``room`` after GPUs were taken from it."""
        self._by_free[room.index_free].discard(room)
        self._by_shareable[room.index_shareable].discard(room)
        self._add(room)

    def candidates(self, ask: Ask) -> Iterator[NodeRoom]:
        """Every schedulable room with at least ``ask.gpus`` GPUs ``ask`` might use.

        In no particular order: callers sort (by score, or by snapshot position).
        """
        buckets = self._by_shareable if ask.share else self._by_free
        for count in range(ask.gpus, len(buckets)):
            yield from buckets[count]
