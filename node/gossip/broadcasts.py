"""The transmit-limited queue of updates waiting to be gossiped.

Each update is sent a bounded number of times (the retransmit limit, which grows
with ``log10`` of the cluster size), then dropped: in an epidemic, by then nearly
everyone has it, and push-pull repairs the rest. Updates sent fewer times go
first; among those, the newest. A newer update about a member replaces any older
one still queued about the same member, so the queue never holds more than one
entry per member. A message takes as many updates as fit in its byte and count
budget; one that does not fit waits for the next message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    key: str
    item: T
    size: int
    transmits: int


class BroadcastQueue(Generic[T]):
    """Updates keyed by the member they are about, each with its encoded size."""

    def __init__(self) -> None:
        self._by_key: dict[str, _Entry[T]] = {}
        # _buckets[t] holds the entries sent t times, oldest first.
        self._buckets: list[dict[str, _Entry[T]]] = [{}]

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def enqueue(self, key: str, item: T, size: int) -> None:
        """Queue ``item`` about member ``key``, replacing what was queued about it."""
        self._discard(key)
        entry = _Entry(key, item, size, 0)
        self._by_key[key] = entry
        self._buckets[0][key] = entry

    def take(self, *, transmit_limit: int, max_bytes: int, max_items: int) -> list[T]:
        """Updates for one message: fewest transmissions first, then newest, within
        ``max_bytes`` and ``max_items``. Each one taken counts as one transmission;
        one that reaches ``transmit_limit`` leaves the queue."""
        chosen: list[_Entry[T]] = []
        room = max_bytes
        for bucket in self._buckets:
            for entry in reversed(bucket.values()):
                if entry.transmits >= transmit_limit:
                    continue
                if entry.size <= room:
                    chosen.append(entry)
                    room -= entry.size
                    if len(chosen) >= max_items:
                        break
            if len(chosen) >= max_items:
                break
        for entry in chosen:
            del self._buckets[entry.transmits][entry.key]
            entry.transmits += 1
            if entry.transmits >= transmit_limit:
                del self._by_key[entry.key]
                continue
            if entry.transmits == len(self._buckets):
                self._buckets.append({})
            self._buckets[entry.transmits][entry.key] = entry
        self._drop_exhausted(transmit_limit)
        return [entry.item for entry in chosen]

    def _drop_exhausted(self, transmit_limit: int) -> None:
        """Drop entries already sent ``transmit_limit`` times (the limit shrinks when
        the cluster does)."""
        while len(self._buckets) > max(1, transmit_limit):
            for key in self._buckets.pop():
                del self._by_key[key]

    def _discard(self, key: str) -> None:
        entry = self._by_key.pop(key, None)
        if entry is not None:
            del self._buckets[entry.transmits][key]
