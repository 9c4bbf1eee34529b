"""Lifeguard's local health score: how much this node should doubt itself.

A node that is overloaded, stalled or partly cut off sees its probes fail and
would accuse healthy peers. Lifeguard makes it notice: failed probes, relays that
did not send the nack they should have, having to refute a suspicion about
itself, or a late event loop raise the score; a successful probe lowers it. While
the score is high the node probes less often and waits longer for answers, so its
own trouble is not mistaken for its peers'.
"""

from __future__ import annotations


class Awareness:
    """A score in ``0 .. max_multiplier - 1`` that stretches probe timings."""

    __slots__ = ("_max_multiplier", "_score")

    def __init__(self, max_multiplier: int) -> None:
        self._max_multiplier = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        """0 is healthy; ``max_multiplier - 1`` is as unhealthy as it gets."""
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Raise (positive) or lower (negative) the score, clamped; returns the new score."""
        self._score = min(self._max_multiplier - 1, max(0, self._score + delta))
        return self._score

    def scale(self, duration: float) -> float:
        """``duration`` stretched by the current health: ``duration * (score + 1)``."""
        return duration * (self._score + 1)
