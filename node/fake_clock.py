"""`FakeClock`: simulated time for the deterministic simulators.

The gossip simulation (:mod:`murmur.node.gossip.simulation`) and the Raft
simulation (:mod:`murmur.node.control.raft.simulation`) both run pure state machines
on it: nothing waits for real time, the clock jumps from one scheduled action to
the next, and the same schedule always runs in the same order (ties in the order
they were scheduled), so a seed replays a run exactly.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable


class FakeClock:
    """An event queue ordered by time, and the time of the action being run.

    Args:
        start: the time before anything ran, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        """The current time, in seconds: only :meth:`run_until` moves it."""
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0

    @property
    def pending(self) -> int:
        """Actions scheduled and not run yet."""
        return len(self._queue)

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``at`` (ties in scheduling order); a
        time already past runs it at the current time, after what is due then."""
        self._order += 1
        heapq.heappush(self._queue, (max(at, self.now), self._order, action))

    def run_until(self, until: float) -> None:
        """Run every action due up to ``until`` (those they schedule in time too),
        then set the clock to ``until``; a clock already past it stays where it is."""
        queue = self._queue
        while queue and queue[0][0] <= until:
            at, _, action = heapq.heappop(queue)
            self.now = at
            action()
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        """:meth:`run_until` ``seconds`` from now."""
        self.run_until(self.now + seconds)
