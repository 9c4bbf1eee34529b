"""The lease under which this node's runs go on: renewed by every word from a leader.

A leader re-places the jobs of a node it has not heard from only after the lease and
a margin have passed, so the node must have stopped them by then, whether it is dead,
cut off by a partition, or there is no leader at all. The lease counts on the
monotonic clock: a wall-clock step must neither end it early nor stretch it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RunLease:
    """How long this node's runs may go on without hearing from a leader again."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.seconds = seconds
        """The length of the last grant (named in the reason of runs it ends)."""
        self._expires_at = clock() + seconds

    def renew(self, seconds: float) -> None:
        """The lease runs ``seconds`` from now. The latest grant counts even when it is
        shorter than what was left: a new leader re-places jobs after *its* lease."""
        self.seconds = seconds
        self._expires_at = self._clock() + seconds

    def remaining(self) -> float:
        """Seconds until the lease expires; 0 once it has."""
        return max(0.0, self._expires_at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0

    def wall_clock_expiry(self) -> float:
        """When the lease expires as ``time.time()`` tells it, for processes that do
        not share this clock (the process runtime's supervisors)."""
        return time.time() + self.remaining()
