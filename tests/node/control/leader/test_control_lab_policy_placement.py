"""The leader places by the lab policy the state holds: quotas, tiers, default requests."""

from __future__ import annotations

from murmur.node.control.leader.placement import plan_cluster, waiting_reasons
from murmur.node.control.leader.planner import QueuePlanner
from murmur.node.control.queue import AssignJob, SubmitJob
from murmur.node.control.queue.commands import SetLabPolicy
from murmur.scheduler.slices import finish
from tests.node.control.leader.test_control_placement import offer
from tests.node.control.queue.builders import SECOND, Log, spec

POLICY = """
[tiers]
urgent = 100
normal = 50
default = "normal"

[queues.deadline]
tier = "urgent"

[groups.nlp]
users = ["alice", "bob"]
gpus = 6

[users.alice]
gpus = 4
"""


def with_policy(text: str = POLICY) -> Log:
    log = Log()
    assert log.apply(SetLabPolicy(text, "admin", 0)).ok
    return log


def test_a_user_cap_holds_the_fifth_gpu_with_the_reason() -> None:
    log = with_policy()
    for number in range(5):
        log.apply(SubmitJob(f"a{number}", spec(gpus=1), "alice", "", 0))
    plan = plan_cluster(log.state, [offer("n1", 8)], 10 * SECOND, new_run_id=lambda: "r")
    assert [a.job_id for a in plan.assignments] == ["a0", "a1", "a2", "a3"]
    assert waiting_reasons(plan) == {"a4": ("quota: user alice uses 4/4 GPUs", 1)}


def test_running_jobs_count_against_the_group_quota() -> None:
    log = with_policy()
    log.apply(SubmitJob("held", spec(gpus=4), "alice", "", 0))
    assert log.apply(AssignJob("held", "n1", "r0", 1, (0, 1, 2, 3), SECOND)).ok
    log.apply(SubmitJob("b1", spec(gpus=2), "bob", "", 0))
    log.apply(SubmitJob("b2", spec(gpus=1), "bob", "", 0))
    log.apply(SubmitJob("c1", spec(gpus=1), "carol", "", 0))  # in no group
    plan = plan_cluster(log.state, [offer("n1", 8)], 10 * SECOND, new_run_id=lambda: "r")
    assert sorted(a.job_id for a in plan.assignments) == ["b1", "c1"]
    assert waiting_reasons(plan)["b2"][0] == "quota: group nlp uses 6/6 GPUs"


def test_a_higher_tier_goes_first() -> None:
    log = with_policy()
    log.apply(SubmitJob("early", spec(gpus=4), "carol", "", 0))
    log.apply(SubmitJob("late", spec(gpus=4, queue="deadline"), "carol", "", 0))
    plan = plan_cluster(log.state, [offer("n1", 4)], 10 * SECOND, new_run_id=lambda: "r")
    assert [a.job_id for a in plan.assignments] == ["late"]


def test_the_policy_default_request_spreads_cpu_only_jobs() -> None:
    log = with_policy('[defaults]\ncpus = 16\nmemory = "1GiB"\n')
    for number in range(4):
        log.apply(SubmitJob(f"cpu{number}", spec(cpus=0, memory_bytes=0), "carol", "", 0))
    plan = plan_cluster(
        log.state, [offer("n1", 0, cpus=32), offer("n2", 0, cpus=32)], 10 * SECOND,
        new_run_id=lambda: "r",
    )  # fmt: skip
    nodes = sorted(a.node for a in plan.assignments)
    assert nodes == ["n1", "n1", "n2", "n2"]


def test_a_new_policy_makes_the_planner_plan_again() -> None:
    log = Log()
    for number in range(3):
        log.apply(SubmitJob(f"a{number}", spec(gpus=1), "alice", "", 0))
    planner = QueuePlanner()
    offers = [offer("n1", 8)]
    first = finish(planner.plan(log.state, offers, 10 * SECOND, new_run_id=lambda: "r"))
    assert len(first.assignments) == 3
    log.apply(SetLabPolicy("[users.alice]\ngpus = 1\n", "admin", 1))
    again = finish(planner.plan(log.state, offers, 10 * SECOND, new_run_id=lambda: "r"))
    assert len(again.assignments) == 1


def test_fair_share_puts_who_had_less_first() -> None:
    from murmur.node.control.queue import ReportRun
    from murmur.node.jobspec import states

    log = with_policy('[fair_share]\nhalf_life = "7d"\n')
    log.apply(SubmitJob("before", spec(gpus=4), "alice", "", 0))
    log.apply(AssignJob("before", "n1", "r0", 1, (0, 1, 2, 3), SECOND))
    log.apply(ReportRun("before", "r0", "n1", states.RUNNING, None, "", SECOND))
    log.apply(ReportRun("before", "r0", "n1", states.SUCCEEDED, 0, "", 3600 * SECOND))
    log.apply(SubmitJob("alice-again", spec(gpus=4), "alice", "", 3601 * SECOND))
    log.apply(SubmitJob("carol-first", spec(gpus=4), "carol", "", 3602 * SECOND))
    plan = plan_cluster(log.state, [offer("n1", 4)], 3700 * SECOND, new_run_id=lambda: "r")
    assert [a.job_id for a in plan.assignments] == ["carol-first"]
