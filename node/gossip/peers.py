"""Bookkeeping for choosing peers: a set with O(1) random sampling, and the
shuffled round-robin order in which SWIM probes members."""

from __future__ import annotations

import random


class PeerSet:
    """Names with O(1) add, remove and membership, and uniform random sampling.

    Kept in a list plus an index so that sampling ``k`` of ``n`` peers costs
    ``O(k)``, not ``O(n)``: a node picks random peers many times a second.
    """

    __slots__ = ("_index", "_names")

    def __init__(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def add(self, name: str) -> None:
        if name not in self._index:
            self._index[name] = len(self._names)
            self._names.append(name)

    def discard(self, name: str) -> None:
        position = self._index.pop(name, None)
        if position is None:
            return
        last = self._names.pop()
        if position < len(self._names):
            self._names[position] = last
            self._index[last] = position

    def names(self) -> list[str]:
        return list(self._names)

    def sample(self, rng: random.Random, k: int, *, exclude: str | None = None) -> list[str]:
        """Up to ``k`` distinct random names, never ``exclude``."""
        wanted = k + (1 if exclude is not None and exclude in self._index else 0)
        picked = rng.sample(self._names, min(wanted, len(self._names)))
        return [name for name in picked if name != exclude][:k]


class ProbeRing:
    """SWIM's probe order: every member once per round, in an order reshuffled each
    round, so that a failed member is probed within a bounded time (at most two
    rounds) instead of whenever random choice gets to it."""

    __slots__ = ("_order", "_position")

    def __init__(self) -> None:
        self._order: list[str] = []
        self._position = 0

    def insert(self, rng: random.Random, name: str) -> None:
        """A new member joins the rest of the current round at a random place (the
        next round, reshuffled from the live set, includes it anyway)."""
        if self._position < len(self._order):
            self._order.insert(rng.randint(self._position, len(self._order)), name)

    def next(self, rng: random.Random, live: PeerSet) -> str | None:
        """The next member of ``live`` to probe; reshuffles at the end of a round.
        None when there is nobody to probe."""
        for _ in range(2):
            while self._position < len(self._order):
                name = self._order[self._position]
                self._position += 1
                if name in live:
                    return name
            self._order = live.names()
            rng.shuffle(self._order)
            self._position = 0
        return None
