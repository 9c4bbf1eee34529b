"""Reading and checking a lab policy file."""

from __future__ import annotations

import pytest

from murmur.scheduler.lab_policy import NO_LAB_POLICY, PolicyError, parse_policy

EXAMPLE = """
[defaults]
cpus = 1
memory = "2GiB"

[tiers]
urgent = 100
normal = 50
default = "normal"

[queues.deadline]
tier = "urgent"

[groups.nlp]
users = ["alice", "bob"]
gpus = 16
user_gpus = 8
cohort = "ml"

[groups.vision]
users = ["carol"]
gpus = 8
cohort = "ml"

[users.alice]
gpus = 4
"""


def test_the_example_reads_as_written() -> None:
    policy = parse_policy(EXAMPLE)
    assert policy.default_cpus == 1.0
    assert policy.default_memory_bytes == 2 * 1024**3
    assert policy.tier_of("deadline") == ("urgent", 100)
    assert policy.tier_of("default") == ("normal", 50)
    nlp = policy.group_of("bob")
    assert nlp is not None
    assert (nlp.name, nlp.gpus, nlp.cohort) == ("nlp", 16, "ml")
    assert policy.user_cap("alice") == 4  # the user's own cap wins
    assert policy.user_cap("bob") == 8  # the group's per-user cap
    assert policy.user_cap("dave") is None  # in no group
    assert [g.name for g in policy.cohort_members("ml")] == ["nlp", "vision"]


def test_preemption_switches_are_off_unless_set() -> None:
    assert not parse_policy(EXAMPLE).preempt_tiers
    assert not parse_policy(EXAMPLE).reclaim_lent_quota
    both = parse_policy(EXAMPLE + "[preemption]\ntiers = true\nreclaim_lent_quota = true\n")
    assert both.preempt_tiers
    assert both.reclaim_lent_quota


def test_no_policy_is_one_tier_and_no_quota() -> None:
    assert parse_policy("") == NO_LAB_POLICY
    assert NO_LAB_POLICY.tier_of("anything") == ("", 0)
    assert NO_LAB_POLICY.user_cap("alice") is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[groups.nlp]\nusers = ['a']\ngpu = 4\n", "unknown key groups.nlp.gpu"),
        ("[preemption]\nreclaim = true\n", "unknown key preemption.reclaim"),
        ("[preemption]\ntiers = 'yes'\n", "preemption.tiers must be true or false"),
        (
            "[preemption]\nreclaim_lent_quota = 1\n",
            "preemption.reclaim_lent_quota must be true or false",
        ),
        ("[fair_share]\nhalf_life = 'a week'\n", "fair_share.half_life must be a duration"),
        ("[fair_share]\n", "fair_share.half_life is missing"),
        ("[groups.nlp]\nweight = 0\n", "groups.nlp.weight must be above 0"),
        ("[defaults]\ntime_limit = '31d'\n", "defaults.time_limit is at most 30 days"),
        ("[queues.q]\ntime_limit = 'soon'\n", "queues.q.time_limit must be a duration"),
        ("[groups.nlp]\ngpus = -1\n", "groups.nlp.gpus must be a whole number"),
        ("[groups.nlp]\ngpus = true\n", "groups.nlp.gpus must be a whole number"),
        ("[groups.a]\nusers=['x']\n[groups.b]\nusers=['x']\n", "user 'x' is in groups"),
        ("[queues.q]\ntier = 'gold'\n", "names 'gold', which is not a tier"),
        ("[tiers]\ndefault = 'gold'\n", "names 'gold', which is not a tier"),
        ("[groups.a]\ncohort='ml'\ngpus=2\n[groups.b]\ncohort='ml'\n", "needs a gpus quota"),
        ("[defaults]\nmemory = 'lots'\n", "defaults.memory must be a size"),
        ("[groups.NLP]\n", "a name is lowercase"),
        ("not = [toml", "not valid TOML"),
    ],
)
def test_mistakes_are_refused_with_the_key_named(text: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint.replace("[", r"\[")):
        parse_policy(text)
