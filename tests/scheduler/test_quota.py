"""GPU quotas: user caps, group quotas, borrowing within a cohort."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler.lab_policy import parse_policy
from murmur.scheduler.quota import QuotaLedger

POLICY = parse_policy(
    """
[groups.nlp]
users = ["alice", "bob"]
gpus = 8
user_gpus = 6
cohort = "ml"

[groups.vision]
users = ["carol"]
gpus = 4
cohort = "ml"

[groups.solo]
users = ["erin"]
gpus = 2

[users.alice]
gpus = 4
"""
)


def test_a_user_cap_holds_the_fifth_gpu() -> None:
    ledger = QuotaLedger(POLICY, [("alice", 4)])
    assert ledger.refusal("alice", 1) == "quota: user alice uses 4/4 GPUs"
    assert ledger.refusal("alice", 5) == (
        "quota: the job asks 5 GPUs, more than user alice's quota of 4"
    )
    assert ledger.refusal("bob", 1) is None


def test_a_group_borrows_what_its_cohort_leaves_idle_and_no_more() -> None:
    ledger = QuotaLedger(POLICY, [("alice", 4), ("bob", 4)])  # nlp at its quota
    assert ledger.refusal("bob", 2) is None  # vision's 4 are idle
    ledger.take("bob", 2)
    assert ledger.refusal("carol", 2) is None  # vision's own quota is always its own
    ledger.take("carol", 2)
    assert ledger.refusal("carol", 3) == (
        "quota: group vision uses 2/4 GPUs and its cohort ml 12/12"
    )


def test_a_group_without_a_cohort_stops_at_its_quota() -> None:
    ledger = QuotaLedger(POLICY, [("erin", 2)])
    assert ledger.refusal("erin", 1) == "quota: group solo uses 2/2 GPUs"
    assert ledger.refusal("erin", 0) is None  # CPU-only jobs are not held back
    assert ledger.refusal("dave", 100) is None  # in no group, no cap


@given(st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol", "erin", "dave"]),
                          st.integers(min_value=0, max_value=6)), max_size=40))  # fmt: skip
def test_taking_only_what_is_admitted_never_exceeds_a_quota(
    asks: list[tuple[str, int]],
) -> None:
    """User caps and cohort-less quotas always hold; a group goes beyond its own
    quota only by borrowing, when its cohort as a whole has room. (A group under its
    own quota is always admitted, even while others borrow from it: taking the lent
    GPUs back from the borrower is preemption's job.)"""
    ledger = QuotaLedger(POLICY, [])
    own = {"nlp": 8, "vision": 4}
    for user, gpus in asks:
        if ledger.refusal(user, gpus) is not None:
            continue
        group = POLICY.group_of(user)
        ledger.take(user, gpus)
        if (
            gpus
            and group is not None
            and group.name in own
            and ledger.held_by_group(group.name) > own[group.name]
        ):
            assert ledger.held_by_group("nlp") + ledger.held_by_group("vision") <= 12
    assert ledger.held_by_user("alice") <= 4
    assert ledger.held_by_user("bob") <= 6
    assert ledger.held_by_group("solo") <= 2


def test_a_run_given_back_frees_its_user_group_and_cohort() -> None:
    ledger = QuotaLedger(POLICY, [("alice", 4), ("bob", 4), ("carol", 4)])  # ml: 12/12
    assert ledger.refusal("carol", 1) is not None
    ledger.give_back("bob", 2)
    assert ledger.held_by_group("nlp") == 6
    assert ledger.refusal("carol", 1) is None  # the cohort has 2 idle again
    ledger.give_back("erin", 5)  # never below nothing
    assert ledger.held_by_user("erin") == 0
