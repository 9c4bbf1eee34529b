"""Suspicion timers with independent confirmations (Lifeguard), driven by the clock.

A suspicion starts at its longest timeout. Each *other* member that independently
suspects the same node is a confirmation, and the timeout shrinks towards its
minimum, logarithmically in the number of confirmations: a node that many peers
cannot reach is declared dead sooner, one that a single (perhaps unhealthy) peer
cannot reach gets the long wait, time enough to refute.

There are no real timers: :attr:`Suspicion.deadline` is recomputed from the start
time, and the state machine compares it with the ``now`` it is given.
"""

from __future__ import annotations

import math


def lifeguard_timeout(
    *, min_timeout: float, max_timeout: float, confirmations: int, expected: int
) -> float:
    """Suspicion timeout after ``confirmations`` of ``expected`` arrived.

    ``max(min, max - (max - min) * log(c + 1) / log(k + 1))``; with ``k < 1`` no
    confirmation is expected and the timeout is ``min`` from the start.
    """
    if expected < 1:
        return min_timeout
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(min_timeout, max_timeout - fraction * (max_timeout - min_timeout))


class Suspicion:
    """The suspicion of one member, from its first accuser until it times out."""

    __slots__ = (
        "_accusers",
        "_cap",
        "_confirmations",
        "_deadline",
        "_not_before",
        "checks",
        "expected",
        "incarnation",
        "last_check_at",
        "max_timeout",
        "min_timeout",
        "started_at",
    )

    def __init__(
        self,
        *,
        accuser: str,
        incarnation: int,
        started_at: float,
        min_timeout: float,
        max_timeout: float,
        expected: int,
    ) -> None:
        self.incarnation = incarnation
        self.started_at = started_at
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.expected = expected
        # The first accuser is not a confirmation: our own suspicion gossiped back
        # to us must not speed up its own timer.
        self._accusers = {accuser}
        self._confirmations = 0
        self._cap = float("inf")
        self._not_before = -math.inf
        self._deadline = started_at + self._timeout()
        self.checks = 0
        """Last-chance pings sent to the suspect (see ``suspicion_check_lead``)."""
        self.last_check_at = -math.inf

    @property
    def accusers(self) -> frozenset[str]:
        """The first accuser and every confirmation counted so far."""
        return frozenset(self._accusers)

    @property
    def confirmations(self) -> int:
        """Independent accusers beyond the first."""
        return self._confirmations

    @property
    def deadline(self) -> float:
        """When the member is to be declared dead unless it refutes first."""
        return max(self._not_before, min(self._deadline, self._cap))

    @property
    def deferred(self) -> bool:
        """True once :meth:`defer` was called."""
        return self._not_before > -math.inf

    def cap(self, at: float) -> None:
        """Declare death no later than ``at`` whatever the confirmations (strong
        evidence, such as a refused connection)."""
        self._cap = min(self._cap, at)

    def defer(self, until: float) -> None:
        """Declare death no earlier than ``until``: the suspecting node's own clock
        ran late, and news that would clear the suspect may be waiting unread."""
        self._not_before = max(self._not_before, until)

    def confirm(self, accuser: str) -> bool:
        """Count ``accuser``'s suspicion; True if it was new and shortened the timer
        (then it is worth passing on), False for a repeat or once at the minimum."""
        if self._confirmations >= self.expected or accuser in self._accusers:
            return False
        self._accusers.add(accuser)
        self._confirmations += 1
        self._deadline = self.started_at + self._timeout()
        return True

    def _timeout(self) -> float:
        return lifeguard_timeout(
            min_timeout=self.min_timeout,
            max_timeout=self.max_timeout,
            confirmations=self._confirmations,
            expected=self.expected,
        )
