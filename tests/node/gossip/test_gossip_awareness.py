"""Lifeguard local health score."""

from __future__ import annotations

from murmur.node.gossip.awareness import Awareness


def test_starts_healthy_and_leaves_timings_alone() -> None:
    awareness = Awareness(8)
    assert awareness.score == 0
    assert awareness.scale(0.5) == 0.5


def test_score_stretches_timings_and_is_clamped() -> None:
    awareness = Awareness(8)
    assert awareness.apply_delta(3) == 3
    assert awareness.scale(1.0) == 4.0
    assert awareness.apply_delta(100) == 7
    assert awareness.scale(1.0) == 8.0
    assert awareness.apply_delta(-100) == 0


def test_successes_pay_back_failures_one_by_one() -> None:
    awareness = Awareness(8)
    awareness.apply_delta(2)
    awareness.apply_delta(-1)
    assert awareness.score == 1
