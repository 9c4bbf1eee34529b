"""Properties of every plan, over random clusters and random queues.

The invariants (``tests.scheduler.invariants``) are checked against an independent
model of free resources, not against the scheduler's own bookkeeping.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import ClusterSnapshot, NodeChoice, PlanBuilder, Policy, schedule
from scheduler.slices import finish
from tests.scheduler.invariants import check_plan
from tests.scheduler.strategies import policies, snapshots


@settings(max_examples=400, deadline=None)
@given(snapshots(), policies)
def test_every_plan_keeps_every_invariant(snapshot: ClusterSnapshot, policy: Policy) -> None:
    check_plan(snapshot, policy, schedule(snapshot, policy=policy))


@settings(max_examples=150, deadline=None)
@given(snapshots(), policies, st.integers(0, 2**32 - 1))
def test_plans_are_deterministic_and_ignore_listing_order(
    snapshot: ClusterSnapshot, policy: Policy, seed: int
) -> None:
    rng = random.Random(seed)
    plan = schedule(snapshot, policy=policy)
    assert schedule(snapshot, policy=policy) == plan
    pending = list(snapshot.pending)
    rng.shuffle(pending)
    nodes = list(snapshot.nodes)
    if policy.node_choice is NodeChoice.BEST_FIT:
        rng.shuffle(nodes)
    assert schedule(ClusterSnapshot(tuple(nodes), tuple(pending)), policy=policy) == plan


@settings(max_examples=100, deadline=None)
@given(snapshots(max_nodes=3, max_jobs=20), policies)
def test_long_queues_on_small_clusters(snapshot: ClusterSnapshot, policy: Policy) -> None:
    """Many jobs competing for little room exercise reservations and the shape memo."""
    check_plan(snapshot, policy, schedule(snapshot, policy=policy))


@settings(max_examples=150, deadline=None)
@given(
    snapshots(max_nodes=3, max_jobs=20),
    policies,
    st.lists(st.integers(0, 5)).map(lambda sizes: [*sizes, 1]),  # a 1 ends every cycle
)
def test_a_plan_decided_in_slices_is_the_plan_decided_at_once(
    snapshot: ClusterSnapshot, policy: Policy, slices: list[int]
) -> None:
    """The leader decides a deep queue, and words why its jobs wait, a slice at a
    time: any slicing, a slice of 0 included, gives the very plan ``schedule`` gives."""
    builder = PlanBuilder(snapshot, policy=policy)
    turns = 0
    while builder.decide(slices[turns % len(slices)]):
        turns += 1
    assert not builder.decide(1)
    expected = schedule(snapshot, policy=policy)
    assert builder.build() == expected
    assert builder.plan_with(finish(builder.waiting_in_slices(max(slices)))) == expected
