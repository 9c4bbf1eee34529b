"""The leader reclaims lent quota: a group within its quota has the newest borrower
of its cohort stopped, requeued (behind the lender's jobs: lenders first), and takes
the room; never a job within its own group's quota, never without the policy switch,
never twice for one job."""

from __future__ import annotations

from murmur.node.control.leader.placement import plan_cluster
from murmur.node.control.leader.preemption import preemptions
from murmur.node.control.queue import AssignJob, ReportRun, SubmitJob
from murmur.node.control.queue.commands import PreemptJob, SetLabPolicy
from murmur.node.jobspec import states
from tests.node.control.leader.test_control_placement import offer
from tests.node.control.queue.builders import SECOND, Log, spec

POLICY = """
[groups.nlp]
users = ["alice"]
gpus = 8
cohort = "ml"

[groups.vision]
users = ["carol"]
gpus = 4
cohort = "ml"

[preemption]
reclaim_lent_quota = true
"""
OFFERS = [offer("n1", 8)]


def running(log: Log, job_id: str, gpus: tuple[int, ...], at: int, **asks: int) -> None:
    assert log.apply(SubmitJob(job_id, spec(gpus=len(gpus), **asks), "carol", "", at)).ok
    assert log.apply(AssignJob(job_id, "n1", f"r-{job_id}", 1, gpus, at + 1)).ok
    assert log.apply(ReportRun(job_id, f"r-{job_id}", "n1", states.RUNNING, None, "", at + 2)).ok


def lent_log(policy: str = POLICY, *, lender_priority: int = 0) -> Log:
    """vision (quota 4) runs 4 GPUs of its own and borrows 4 of nlp's idle 8; then
    alice (nlp) asks for 4."""
    log = Log()
    assert log.apply(SetLabPolicy(policy, "admin", 0)).ok
    running(log, "own", (0, 1, 2, 3), SECOND)
    running(log, "borrow", (4, 5, 6, 7), 2 * SECOND)
    mine = spec(gpus=4, priority=lender_priority)
    assert log.apply(SubmitJob("mine", mine, "alice", "", 3 * SECOND)).ok
    return log


def decide(log: Log, at: int = 4 * SECOND) -> list[PreemptJob]:
    plan = plan_cluster(log.state, OFFERS, at, new_run_id=lambda: "r")
    assert plan.assignments == ()
    return preemptions(log.state, OFFERS, plan, at)


def test_the_lender_reclaims_from_the_borrower_which_is_requeued() -> None:
    log = lent_log(lender_priority=10)
    commands = decide(log)
    assert [(c.job_id, c.by_job) for c in commands] == [("borrow", "mine")]
    assert commands[0].reason == (
        "reclaiming quota lent by group nlp: group vision holds 8/4 GPUs; "
        "alice's job needs its room on n1"
    )
    assert log.apply(commands[0]).ok
    assert decide(log) == []  # under way: nothing more
    log.apply(ReportRun("borrow", "r-borrow", "n1", states.CANCELLED, 143, "", 5 * SECOND))
    borrow = log.state.job("borrow")
    assert borrow is not None
    assert borrow.state == states.PENDING
    assert borrow.attempts == 0  # not the borrower's doing
    assert borrow.reason.startswith("requeued: preempted by job mine: reclaiming quota lent")
    plan = plan_cluster(log.state, OFFERS, 6 * SECOND, new_run_id=lambda: "r2")
    assert [(a.job_id, a.gpu_indices) for a in plan.assignments] == [("mine", (4, 5, 6, 7))]
    assert [entry.job_id for entry in plan.waiting] == ["borrow"]  # until room frees up


def test_under_submission_order_too_the_requeued_borrower_queues_behind_the_lender() -> None:
    # "borrow" was submitted before "mine", but it would borrow again: jobs within
    # their group's quota go first, so the room it gives back goes to "mine".
    log = lent_log()
    (command,) = decide(log)
    assert (command.job_id, command.by_job) == ("borrow", "mine")
    assert log.apply(command).ok
    log.apply(ReportRun("borrow", "r-borrow", "n1", states.CANCELLED, 143, "", 5 * SECOND))
    plan = plan_cluster(log.state, OFFERS, 6 * SECOND, new_run_id=lambda: "r2")
    assert [a.job_id for a in plan.assignments] == ["mine"]
    assert [entry.job_id for entry in plan.waiting] == ["borrow"]


def test_with_fair_share_the_lenders_job_comes_first_and_reclaims() -> None:
    # vision has had GPU time (a run that ended); nlp none: alice's job goes before
    # the borrower's, which therefore does not take the room back.
    log = Log()
    assert log.apply(SetLabPolicy(POLICY + '[fair_share]\nhalf_life = "7d"\n', "admin", 0)).ok
    running(log, "past", (0, 1, 2, 3), 0)
    log.apply(ReportRun("past", "r-past", "n1", states.SUCCEEDED, 0, "", SECOND // 2))
    running(log, "own", (0, 1, 2, 3), SECOND)
    running(log, "borrow", (4, 5, 6, 7), 2 * SECOND)
    assert log.apply(SubmitJob("mine", spec(gpus=4), "alice", "", 3 * SECOND)).ok
    assert [(c.job_id, c.by_job) for c in decide(log)] == [("borrow", "mine")]


def test_a_borrower_that_came_after_the_lenders_job_is_stopped_but_only_once() -> None:
    log = Log()
    assert log.apply(SetLabPolicy(POLICY, "admin", 0)).ok
    running(log, "own", (0, 1, 2, 3), SECOND)
    assert log.apply(SubmitJob("mine", spec(gpus=4), "alice", "", 2 * SECOND)).ok
    running(log, "late", (4, 5, 6, 7), 3 * SECOND)  # it got there first somehow
    commands = decide(log, 5 * SECOND)
    assert [(c.job_id, c.by_job) for c in commands] == [("late", "mine")]
    log.apply(commands[0])
    log.apply(ReportRun("late", "r-late", "n1", states.CANCELLED, 143, "", 6 * SECOND))
    # Say it got its room back all the same: it is not stopped for "mine" again.
    assert log.apply(AssignJob("late", "n1", "r-late-2", 1, (4, 5, 6, 7), 7 * SECOND)).ok
    assert decide(log, 8 * SECOND) == []


def test_of_two_borrowers_the_one_that_started_last_is_stopped() -> None:
    # Both would queue behind "mine" once requeued (lenders first), whenever they
    # were submitted: "early" started last, so it loses the least work.
    log = Log()
    assert log.apply(SetLabPolicy(POLICY, "admin", 0)).ok
    running(log, "own", (0, 1, 2, 3), 0)
    assert log.apply(SubmitJob("early", spec(gpus=2), "carol", "", SECOND)).ok
    assert log.apply(SubmitJob("mine", spec(gpus=2), "alice", "", 2 * SECOND)).ok
    running(log, "late", (4, 5), 3 * SECOND)
    assert log.apply(AssignJob("early", "n1", "r-early", 1, (6, 7), 5 * SECOND)).ok
    commands = decide(log, 6 * SECOND)
    assert [(c.job_id, c.by_job) for c in commands] == [("early", "mine")]


def test_a_job_within_its_groups_quota_is_never_stopped() -> None:
    log = Log()
    assert log.apply(SetLabPolicy(POLICY, "admin", 0)).ok
    running(log, "own", (0, 1, 2, 3), SECOND)
    running(log, "borrow", (4, 5, 6, 7), 2 * SECOND)
    assert log.apply(SubmitJob("all", spec(gpus=8, priority=10), "alice", "", 3 * SECOND)).ok
    assert decide(log) == []  # all 8 GPUs would need "own", within vision's quota


def test_a_higher_tier_borrower_is_spared() -> None:
    tiered = (
        POLICY
        + '[tiers]\nhigh = 100\nlow = 10\ndefault = "low"\n[queues.deadline]\ntier = "high"\n'
    )
    log = Log()
    assert log.apply(SetLabPolicy(tiered, "admin", 0)).ok
    running(log, "own", (0, 1, 2, 3), SECOND)
    assert log.apply(
        SubmitJob("borrow", spec(gpus=4, queue="deadline"), "carol", "", 2 * SECOND)
    ).ok
    assert log.apply(AssignJob("borrow", "n1", "r-borrow", 1, (4, 5, 6, 7), 2 * SECOND)).ok
    assert log.apply(SubmitJob("mine", spec(gpus=4, priority=10), "alice", "", 3 * SECOND)).ok
    assert decide(log) == []


def test_without_the_policy_switch_nothing_is_reclaimed() -> None:
    off = POLICY.replace("reclaim_lent_quota = true", "reclaim_lent_quota = false")
    assert decide(lent_log(off, lender_priority=10)) == []
