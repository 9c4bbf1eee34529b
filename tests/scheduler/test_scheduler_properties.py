"""Properties of every plan, over random clusters and random queues.

The invariants (``tests.scheduler.invariants``) are checked against an independent
model of free resources, not against the scheduler's own bookkeeping.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import ClusterSnapshot, NodeChoice, PlanBuilder, Policy, schedule
from murmur.scheduler.slices import finish
from tests.scheduler.builders import make_job, make_node, make_snapshot
from tests.scheduler.invariants import check_plan
from tests.scheduler.strategies import policies, snapshots, timed_snapshots


@settings(max_examples=400, deadline=None)
@given(snapshots(), policies)
def test_every_plan_keeps_every_invariant(snapshot: ClusterSnapshot, policy: Policy) -> None:
    check_plan(snapshot, policy, schedule(snapshot, policy=policy))


@settings(max_examples=400, deadline=None)
@given(timed_snapshots(), policies)
def test_every_plan_on_a_clock_keeps_every_invariant(
    snapshot: ClusterSnapshot, policy: Policy
) -> None:
    """With time limits, reservations know their start, jobs backfill before it and
    take what the reserver will not need: nothing over-allocated, and every
    reserver has its room at its start."""
    check_plan(snapshot, policy, schedule(snapshot, policy=policy))


@settings(max_examples=150, deadline=None)
@given(timed_snapshots(max_nodes=3, max_jobs=20), policies)
def test_long_queues_on_small_clusters_on_a_clock(
    snapshot: ClusterSnapshot, policy: Policy
) -> None:
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


@settings(max_examples=200, deadline=None)
@given(snapshots(max_nodes=3, max_jobs=20), policies, st.integers(0, 20), st.booleans())
def test_a_plan_extended_by_later_jobs_is_the_plan_of_them_all(
    snapshot: ClusterSnapshot, policy: Policy, split: int, word_first: bool
) -> None:
    """The leader decides new submissions on top of its last plan: that is the plan of
    the whole queue, waiting reasons and reservations included."""
    order = policy.queue_order(snapshot.pending)
    split = min(split, len(order))
    later = [dataclasses.replace(job, datasets=()) for job in order[split:]]
    whole = dataclasses.replace(snapshot, pending=(*order[:split], *later))
    builder = PlanBuilder(
        dataclasses.replace(snapshot, pending=tuple(order[:split])), policy=policy
    )
    builder.decide(len(builder.order))
    if word_first:
        builder.build()  # reasons worded before the extension are kept or worded again
    assert builder.extend(later)
    builder.decide(len(later))
    assert builder.build() == schedule(whole, policy=policy)


def test_jobs_that_would_go_ahead_or_name_a_dataset_do_not_extend_a_plan() -> None:
    first = make_job("first", 1, submit_order=2)
    snapshot = make_snapshot([make_node("n", 1)], [first])
    builder = PlanBuilder(snapshot)
    builder.decide(1)
    ahead = make_job("ahead", 1, submit_order=1)
    urgent = make_job("urgent", 1, submit_order=3, priority=5)
    with_data = dataclasses.replace(make_job("data", 1, submit_order=4), datasets=("imagenet",))
    for refused in (ahead, urgent, with_data):
        assert not builder.extend([refused])
    assert builder.order == (first,)
    assert builder.extend([make_job("later", 1, submit_order=5)])
    assert [job.id for job in builder.order] == ["first", "later"]


def test_reasons_worded_before_an_extension_that_places_a_job_are_worded_again() -> None:
    snapshot = make_snapshot([make_node("n", 4, busy=(0,))], [make_job("big", 4, submit_order=1)])
    no_holds = Policy(reserve_for_blocked_jobs=False)
    builder = PlanBuilder(snapshot, policy=no_holds)
    builder.decide(1)
    before = builder.build()
    small = make_job("small", 1, submit_order=2)
    assert builder.extend([small])
    builder.decide(1)
    after = builder.build()
    whole = dataclasses.replace(snapshot, pending=(*snapshot.pending, small))
    assert after == schedule(whole, policy=no_holds)
    assert [placement.job_id for placement in after.placements] == ["small"]
    assert after.waiting[0].reason != before.waiting[0].reason  # 2 GPUs free now, not 3
