"""The leader's preemption step: off without the policy, one at a time, lower tiers
only, never for a job held by a quota."""

from __future__ import annotations

from murmur.node.control.leader.placement import plan_cluster
from murmur.node.control.leader.preemption import preemptions
from murmur.node.control.queue import AssignJob, ReportRun, SubmitJob
from murmur.node.control.queue.commands import PreemptJob, SetLabPolicy
from murmur.node.jobspec import states
from tests.node.control.leader.test_control_placement import offer
from tests.node.control.queue.builders import SECOND, Log, spec

POLICY = """
[tiers]
urgent = 100
normal = 50
default = "normal"
[queues.deadline]
tier = "urgent"
[preemption]
tiers = true
"""


def busy_log(policy: str = POLICY) -> Log:
    log = Log()
    log.apply(SetLabPolicy(policy, "admin", 0))
    log.apply(SubmitJob("low", spec(gpus=4), "bob", "", 0))
    log.apply(AssignJob("low", "n1", "r1", 1, (0, 1, 2, 3), SECOND))
    log.apply(ReportRun("low", "r1", "n1", states.RUNNING, None, "", SECOND))
    log.apply(SubmitJob("high", spec(gpus=4, queue="deadline"), "alice", "", 2 * SECOND))
    return log


def decide(log: Log) -> list[PreemptJob]:
    offers = [offer("n1", 4)]
    plan = plan_cluster(log.state, offers, 3 * SECOND, new_run_id=lambda: "r")
    assert plan.assignments == ()
    return preemptions(log.state, offers, plan, 3 * SECOND)


def test_a_higher_tier_job_preempts_the_lower_one_once() -> None:
    log = busy_log()
    commands = decide(log)
    assert [(c.job_id, c.by_job) for c in commands] == [("low", "high")]
    assert "alice's job of tier urgent needs its room on n1" in commands[0].reason
    assert log.apply(commands[0]).ok
    assert decide(log) == []  # under way: nothing more


def test_without_the_policy_switch_nothing_is_preempted() -> None:
    assert decide(busy_log(POLICY.replace("tiers = true", "tiers = false"))) == []


def test_a_job_held_by_its_quota_preempts_nothing() -> None:
    log = busy_log(POLICY + "[users.alice]\ngpus = 2\n")
    assert decide(log) == []
