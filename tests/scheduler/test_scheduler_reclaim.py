"""Reclaiming lent quota: only borrowers of the lender's cohort are stopped, never a
job within its group's quota, never a higher tier, never more than needed; and only
for a job that stays within its own group's quota."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import DEFAULT_POLICY, GpuState, JobRequest, NodeState
from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import check_room
from murmur.scheduler.lab_policy import parse_policy
from murmur.scheduler.preemption import RunningJob, without
from murmur.scheduler.reclaim import quota_use, reclaim_victims, reclaiming_group
from murmur.scheduler.room import NodeRoom
from tests.scheduler.builders import GIB, make_job

LAB = parse_policy(
    """
[tiers]
high = 100
low = 10
default = "low"

[groups.nlp]
users = ["alice", "bob"]
gpus = 8
cohort = "ml"

[groups.vision]
users = ["carol", "dan"]
gpus = 4
cohort = "ml"

[groups.speech]
users = ["erin"]
gpus = 4
cohort = "ml"

[groups.robotics]
users = ["farah"]
gpus = 4

[users.bob]
gpus = 2
"""
)
USERS = ("alice", "bob", "carol", "dan", "erin", "farah", "gus")
LOW, HIGH = 10, 100


def node_of(name: str, running: list[RunningJob]) -> NodeState:
    holders = {index: job.job_id for job in running for index in job.gpu_indices}
    gpus = tuple(
        GpuState(i, "A100", 80 * GIB, (holders[i],) if i in holders else ()) for i in range(8)
    )
    return NodeState(name, gpus, 64, 64, 512 * GIB, 512 * GIB)


def run(job_id: str, user: str, gpus: range, started: int, tier: int = LOW) -> RunningJob:
    return RunningJob(job_id, tier, started, tuple(gpus), 0.0, 0, user)


def ask(user: str, gpus: int) -> JobRequest:
    return replace(make_job(f"{user}-wants-{gpus}", gpus), user=user)


def victims_for(job: JobRequest, tier: int, running: dict[str, list[RunningJob]]) -> list[str]:
    nodes = [node_of(name, jobs) for name, jobs in sorted(running.items())]
    holders = [job for jobs in running.values() for job in jobs]
    chosen = reclaim_victims(
        job, tier, nodes, running, DEFAULT_POLICY, LAB, quota_use(LAB, holders)
    )
    return [] if chosen is None else [victim.job_id for victim in chosen.victims]


def test_the_newest_borrower_gives_back_what_the_lender_needs() -> None:
    # vision (quota 4) holds 4 within its quota and borrows 4 of nlp's idle 8.
    running = {
        "n1": [
            run("v-own", "carol", range(4), 100),
            run("v-old", "dan", range(4, 6), 200),
            run("v-new", "carol", range(6, 8), 300),
        ]
    }
    assert victims_for(ask("alice", 2), LOW, running) == ["v-new"]
    assert victims_for(ask("alice", 4), LOW, running) == ["v-new", "v-old"]
    assert victims_for(ask("alice", 5), LOW, running) == []  # v-own is within its quota


def test_a_job_that_takes_its_group_over_quota_borrows_even_if_part_of_it_is_within() -> None:
    jobs = [run("a", "carol", range(3), 1), run("b", "dan", range(3, 5), 2)]
    use = quota_use(LAB, jobs)
    assert use.by_group == {"vision": 5}
    assert use.borrowing == {"b"}  # 3 + 2 > 4
    assert victims_for(ask("alice", 5), LOW, {"n1": jobs}) == ["b"]


def test_only_a_lender_within_its_own_quota_reclaims() -> None:
    running = {
        "n1": [run("nlp", "alice", range(6), 1), run("borrow", "carol", range(6, 8), 2)],
        "n2": [run("v", "carol", range(4), 1), run("v2", "dan", range(4, 8), 3)],
    }
    use = quota_use(LAB, [job for jobs in running.values() for job in jobs])
    assert use.by_group == {"nlp": 6, "vision": 10}
    assert reclaiming_group(LAB, ask("alice", 2), use) is not None
    assert reclaiming_group(LAB, ask("alice", 3), use) is None  # 6 + 3 > 8
    assert reclaiming_group(LAB, ask("bob", 3), use) is None  # bob's own cap is 2
    assert reclaiming_group(LAB, ask("farah", 1), use) is None  # in no cohort
    assert reclaiming_group(LAB, ask("gus", 1), use) is None  # in no group
    assert victims_for(ask("alice", 3), LOW, running) == []


def test_higher_tiers_other_cohorts_and_the_lenders_own_jobs_are_spared() -> None:
    running = {
        "n1": [
            run("vision", "carol", range(4), 1),
            run("vision-high", "dan", range(4, 6), 5, tier=HIGH),  # borrows, higher tier
            run("robotics", "farah", range(6, 8), 2),  # no cohort
        ],
        "n2": [
            run("speech", "erin", range(4), 1),
            run("speech-more", "erin", range(4, 8), 2),  # borrows, low tier
        ],
    }
    assert victims_for(ask("alice", 2), LOW, running) == ["speech-more"]
    assert victims_for(ask("alice", 2), HIGH, running) == ["speech-more"]  # lowest tier first
    del running["n2"]
    assert victims_for(ask("alice", 2), LOW, running) == []
    assert victims_for(ask("alice", 2), HIGH, running) == ["vision-high"]


def test_a_gang_reclaims_nothing() -> None:
    running = {"n1": [run("v", "carol", range(4), 1), run("b", "dan", range(4, 8), 2)]}
    assert victims_for(replace(ask("alice", 4), nodes=2), LOW, running) == []


def reference_borrows(victim: RunningJob, everyone: list[RunningJob]) -> bool:
    """Independently of quota_use: whether the GPUs of ``victim``'s group's jobs
    started no later than it go beyond the group's quota."""
    group = LAB.group_of(victim.user)
    assert group is not None
    assert group.gpus is not None
    earlier = [
        job
        for job in everyone
        if LAB.group_of(job.user) == group
        and (job.started_us, job.job_id) <= (victim.started_us, victim.job_id)
    ]
    return sum(len(job.gpu_indices) for job in earlier) > group.gpus


def fits(node: NodeState, victims: list[RunningJob], job: JobRequest) -> bool:
    room = NodeRoom(without(node, victims))
    return check_room(room, Ask.of(job, DEFAULT_POLICY.dataset_locality)) is None


running_jobs = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.integers(min_value=1, max_value=4),
        st.sampled_from((LOW, HIGH)),
        st.integers(min_value=0, max_value=50),
    ),
    min_size=4,
    max_size=16,
)


@settings(max_examples=300)  # about one in ten examples reclaims something
@given(
    jobs=running_jobs,
    user=st.sampled_from(USERS),
    gpus=st.integers(min_value=1, max_value=6),
    tier=st.sampled_from((LOW, HIGH)),
)
def test_reclaim_stops_only_borrowers_of_the_same_or_lower_tier_and_never_more_than_needed(
    jobs: list[tuple[str, int, int, int]], user: str, gpus: int, tier: int
) -> None:
    running: dict[str, list[RunningJob]] = {"n1": [], "n2": []}
    free = {"n1": 8, "n2": 8}
    for number, (owner, size, job_tier, started) in enumerate(jobs):
        name = "n1" if free["n1"] >= size else "n2"
        if free[name] < size:
            continue
        first = 8 - free[name]
        running[name].append(
            run(f"j{number}", owner, range(first, first + size), started, job_tier)
        )
        free[name] -= size
    everyone = [job for node_jobs in running.values() for job in node_jobs]
    nodes = {name: node_of(name, node_jobs) for name, node_jobs in running.items()}
    waiting = ask(user, gpus)
    use = quota_use(LAB, everyone)
    chosen = reclaim_victims(waiting, tier, list(nodes.values()), running, DEFAULT_POLICY, LAB, use)
    lender = LAB.group_of(user)
    held = {
        name: sum(len(job.gpu_indices) for job in everyone if LAB.group_of(job.user) == group)
        for name, group in LAB.groups.items()
    }
    eligible = (
        lender is not None
        and lender.cohort != ""
        and lender.gpus is not None
        and held[lender.name] + gpus <= lender.gpus
        and (
            user != "bob" or sum(len(j.gpu_indices) for j in everyone if j.user == user) + gpus <= 2
        )
    )
    assert (reclaiming_group(LAB, waiting, use) is not None) == eligible

    def may_stop(victim: RunningJob) -> bool:
        group = LAB.group_of(victim.user)
        return (
            lender is not None
            and group is not None
            and group != lender
            and group.cohort == lender.cohort
            and victim.tier <= tier
            and reference_borrows(victim, everyone)
        )

    if chosen is None:
        if eligible:  # then no node frees enough even with every borrower there stopped
            for name, node in nodes.items():
                stoppable = [v for v in running[name] if may_stop(v)]
                assert fits(node, [], waiting) or not fits(node, stoppable, waiting)
        return
    assert eligible
    victims = list(chosen.victims)
    assert victims
    assert all(may_stop(victim) for victim in victims)  # borrowers, same or lower tier
    assert all(victim in running[chosen.node] for victim in victims)
    node = nodes[chosen.node]
    assert fits(node, victims, waiting)
    for spared in victims:  # none needless
        assert not fits(node, [v for v in victims if v is not spared], waiting)
