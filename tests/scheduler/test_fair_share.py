"""Fair share: decayed usage, F = 2^(-U/S), and the multifactor order."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler.fair_share import (
    DAY_US,
    UsageBucket,
    decayed_usage,
    fair_share,
    multifactor_order,
    share_key,
)
from murmur.scheduler.lab_policy import parse_policy
from tests.scheduler.builders import make_job

POLICY = parse_policy(
    """
[fair_share]
half_life = "7d"

[groups.nlp]
users = ["alice"]
weight = 3

[groups.vision]
users = ["carol"]
"""
)
NOW = 1000 * DAY_US


def test_usage_halves_every_half_life() -> None:
    buckets = [UsageBucket("alice", "nlp", 1000 - 7, 100.0), UsageBucket("alice", "nlp", 999, 10.0)]
    usage = decayed_usage(buckets, NOW + DAY_US // 2, 7 * DAY_US)
    expected = 100.0 * 0.5 + 10.0 * 0.5 ** (1 / 7)  # 7 days old, and 1 day old
    assert abs(usage["group:nlp"] - expected) < 1e-9


def test_using_exactly_the_share_gives_one_half() -> None:
    # nlp has 3/4 of the weight and used 3/4 of the GPU time; vision likewise 1/4.
    shares = fair_share(POLICY, {"group:nlp": 300.0, "group:vision": 100.0})
    assert abs(shares.factor("group:nlp") - 0.5) < 1e-9
    assert abs(shares.factor("group:vision") - 0.5) < 1e-9
    assert shares.factor("user:dave") == 1.0  # used nothing


def test_who_had_less_than_their_share_goes_first() -> None:
    shares = fair_share(POLICY, {"group:nlp": 100.0, "group:vision": 300.0})
    alice = dataclasses.replace(make_job("a", 1), user="alice")
    carol = dataclasses.replace(make_job("c", 1), user="carol")  # submitted later
    dave = dataclasses.replace(make_job("d", 1), user="dave")  # no usage at all
    order = multifactor_order(POLICY, shares, NOW, {})
    assert [job.id for job in order([carol, alice, dave])] == ["d", "a", "c"]
    assert share_key("dave", "") == "user:dave"


def test_age_and_own_priority_count_after_fair_share() -> None:
    shares = fair_share(POLICY, {})
    old = make_job("old", 1)
    new = make_job("new", 1)
    urgent = dataclasses.replace(make_job("urgent", 1), priority=500)
    order = multifactor_order(POLICY, shares, NOW, {"old": NOW - 7 * DAY_US, "new": NOW})
    assert [job.id for job in order([new, old, urgent])] == ["old", "urgent", "new"]


JOBS = st.lists(
    st.tuples(st.sampled_from(["alice", "carol", "dave"]), st.integers(min_value=-5, max_value=5)),
    max_size=20,
)
USAGE = st.dictionaries(
    st.sampled_from(["group:nlp", "group:vision", "user:dave"]),
    st.floats(min_value=0, max_value=1e6),
)


@given(JOBS, USAGE)
def test_the_order_is_a_permutation(jobs: list[tuple[str, int]], usage: dict[str, float]) -> None:
    pending = [
        dataclasses.replace(make_job(f"j{n}", 1), user=user, priority=priority)
        for n, (user, priority) in enumerate(jobs)
    ]
    ordered = multifactor_order(POLICY, fair_share(POLICY, usage), NOW, {})(pending)
    assert sorted(job.id for job in ordered) == sorted(job.id for job in pending)
    for shares in fair_share(POLICY, usage).factors.values():
        assert 0.0 <= shares <= 1.0
