"""Lifeguard suspicion timers: the interpolation and the confirmation rules."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.gossip.suspicion import Suspicion, lifeguard_timeout


def test_no_confirmation_waits_the_maximum() -> None:
    assert lifeguard_timeout(min_timeout=4, max_timeout=24, confirmations=0, expected=2) == 24


def test_expected_confirmations_bring_it_to_the_minimum() -> None:
    assert lifeguard_timeout(min_timeout=4, max_timeout=24, confirmations=2, expected=2) == 4


def test_one_of_two_confirmations_is_logarithmic() -> None:
    expected = 24 - 20 * math.log(2) / math.log(3)
    timeout = lifeguard_timeout(min_timeout=4, max_timeout=24, confirmations=1, expected=2)
    assert timeout == pytest.approx(expected)


def test_without_expected_confirmations_the_minimum_applies_at_once() -> None:
    assert lifeguard_timeout(min_timeout=4, max_timeout=24, confirmations=0, expected=0) == 4


@given(
    st.floats(0.1, 100),
    st.floats(1, 10),
    st.integers(1, 10),
    st.integers(0, 20),
)
def test_timeout_stays_within_bounds_and_never_grows(
    min_timeout: float, factor: float, expected: int, confirmations: int
) -> None:
    max_timeout = min_timeout * factor
    timeouts = [
        lifeguard_timeout(
            min_timeout=min_timeout, max_timeout=max_timeout, confirmations=c, expected=expected
        )
        for c in range(confirmations + 1)
    ]
    assert all(min_timeout <= t <= max_timeout + 1e-9 for t in timeouts)
    assert all(later <= earlier for earlier, later in itertools.pairwise(timeouts))


def _suspicion(expected: int = 2) -> Suspicion:
    return Suspicion(
        accuser="a",
        incarnation=3,
        started_at=100.0,
        min_timeout=4,
        max_timeout=24,
        expected=expected,
    )


def test_deadline_starts_at_max_and_shrinks_with_independent_confirmations() -> None:
    suspicion = _suspicion()
    assert suspicion.deadline == 124.0
    assert suspicion.confirm("b")
    assert 104.0 < suspicion.deadline < 124.0
    assert suspicion.confirm("c")
    assert suspicion.deadline == 104.0
    assert suspicion.confirmations == 2


def test_the_first_accuser_and_repeats_do_not_count() -> None:
    suspicion = _suspicion()
    assert not suspicion.confirm("a")
    assert suspicion.confirm("b")
    assert not suspicion.confirm("b")
    assert suspicion.confirmations == 1


def test_confirmations_beyond_the_expected_are_not_news() -> None:
    suspicion = _suspicion(expected=1)
    assert suspicion.confirm("b")
    assert not suspicion.confirm("c")
    assert suspicion.deadline == 104.0


def test_a_deferred_suspicion_expires_no_earlier_than_asked() -> None:
    suspicion = _suspicion()
    suspicion.confirm("b")
    suspicion.confirm("c")
    assert not suspicion.deferred
    suspicion.defer(110.0)
    assert suspicion.deferred
    assert suspicion.deadline == 110.0
    suspicion.cap(101.0)  # strong evidence cannot undo the wait for news either
    assert suspicion.deadline == 110.0
