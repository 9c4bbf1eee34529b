"""The soak's verdicts on synthetic samples: each rule must catch what it is for and
must not flag what is allowed."""

from __future__ import annotations

from tests.soak.checks import (
    ClusterMoment,
    DaemonSeries,
    JobWatchdog,
    OpenJob,
    StatusHonesty,
    StatusObservation,
    growth,
    resource_verdicts,
)
from tests.soak.faults import Downtime
from tests.soak.pacing import Bounds
from tests.soak.workload import JobKind, JobPlan

BOUNDS = Bounds(start_seconds=60.0)


def seen(by: str, leader: str, term: int, at: float) -> StatusObservation:
    return StatusObservation(by, leader, term, sent_at=at, received_at=at + 0.01)


def test_status_one_leader_per_term() -> None:
    honesty = StatusHonesty()
    honesty.observe(seen("node-1", "node-1", 3, 10.0), None)
    honesty.observe(seen("node-2", "node-1", 3, 10.5), None)
    honesty.observe(seen("node-3", "", 4, 11.0), None)  # an election: no leader named
    assert honesty.violations == []
    honesty.observe(seen("node-3", "node-3", 3, 11.5), None)
    assert len(honesty.violations) == 1
    assert "term 3 has two leader names" in honesty.violations[0]


def test_status_never_names_a_dead_node_leader_of_a_later_term() -> None:
    downtime = Downtime()
    window = downtime.begin("node-2", "killed", 100.0, led_up_to=12)
    honesty = StatusHonesty()
    # A survivor that still names the dead node for the term it led is honest.
    honesty.observe(seen("node-1", "node-2", 12, 101.0), downtime.covering("node-2", 101, 101.01))
    assert honesty.violations == []
    honesty.observe(seen("node-1", "node-2", 13, 102.0), downtime.covering("node-2", 102, 102.01))
    assert len(honesty.violations) == 1
    assert "while node-2 was killed" in honesty.violations[0]
    # Once restarted it may lead a later term.
    window.until = 103.0
    assert downtime.covering("node-2", 104.0, 104.01) is None
    # An answer asked before the kill is not held against it.
    assert downtime.covering("node-2", 99.9, 100.1) is None


def test_status_logged_leaders_of_one_term() -> None:
    honesty = StatusHonesty()
    honesty.logged_leaders({"node-1": {1, 3}, "node-2": {2}})
    assert honesty.violations == []
    honesty.logged_leaders({"node-1": {1, 3}, "node-2": {3}})
    assert honesty.violations == ["term 3 led by node-1, node-2 (from their logs)"]


def plan(name: str, seconds: float = 1.0, gpus: int = 0) -> JobPlan:
    return JobPlan(name, JobKind.SHORT, seconds, "ok", 0, gpus)


def moment(
    now: float,
    jobs: list[OpenJob] | None,
    *,
    leader_since: float = 0.0,
    healthy: dict[str, int] | None = None,
    quiet: dict[str, float] | None = None,
    cancelled: dict[str, float] | None = None,
) -> ClusterMoment:
    return ClusterMoment(
        now=now,
        jobs=jobs,
        leader_since=leader_since,
        quiet_since=quiet or {},
        healthy={"node-1": 2, "node-2": 2} if healthy is None else healthy,
        cancelled_at=cancelled or {},
    )


def test_a_run_that_never_starts_is_stuck_unless_the_leader_changed() -> None:
    watchdog = JobWatchdog(BOUNDS, {"a": plan("a")})
    job = OpenJob("j1", "a", "starting", run_id="r1", run_node="node-1")
    assert watchdog.sample(moment(0.0, [job])) == []
    assert watchdog.sample(moment(50.0, [job], leader_since=40.0)) == []
    assert watchdog.sample(moment(90.0, [job], leader_since=40.0)) == []  # a new leader's clock
    found = watchdog.sample(moment(101.0, [job], leader_since=40.0))
    assert len(found) == 1
    assert found[0].startswith("unstarted: job j1")
    assert watchdog.sample(moment(130.0, [job])) == []  # reported once


def test_a_run_past_its_program_end_is_overdue() -> None:
    watchdog = JobWatchdog(BOUNDS, {"a": plan("a", seconds=30.0)})
    job = OpenJob("j1", "a", "running", run_id="r1", run_node="node-1", run_started_at=0.0)
    assert watchdog.sample(moment(80.0, [job])) == []
    # Its node was down until 70: the clock starts again there.
    assert watchdog.sample(moment(95.0, [job], quiet={"node-1": 70.0})) == []
    assert len(watchdog.sample(moment(95.0, [job]))) == 1


def test_a_cancelled_job_must_end() -> None:
    watchdog = JobWatchdog(BOUNDS, {"a": plan("a", seconds=1000.0)})
    job = OpenJob("j1", "a", "running", run_id="r1", run_node="node-1", run_started_at=0.0)
    assert watchdog.sample(moment(50.0, [job], cancelled={"j1": 0.0})) == []
    found = watchdog.sample(moment(61.0, [job], cancelled={"j1": 0.0}))
    assert [line.split(":")[0] for line in found] == ["cancel-not-ended"]


def test_a_pending_job_with_room_is_stuck_but_not_one_behind_a_bigger_one() -> None:
    plans = {"big": plan("big", gpus=2), "small": plan("small"), "hold": plan("hold", 1e6, 1)}
    watchdog = JobWatchdog(BOUNDS, plans)
    # node-1 and node-2 each hold one GPU: the 2-GPU job waits, and the job behind it too.
    jobs = [
        OpenJob("h1", "hold", "running", run_id="r1", run_node="node-1", run_started_at=0.0),
        OpenJob("h2", "hold", "running", run_id="r2", run_node="node-2", run_started_at=0.0),
        OpenJob("b", "big", "pending", queue_position=1),
        OpenJob("s", "small", "pending", queue_position=2),
    ]
    for now in (0.0, 30.0, 61.0, 90.0):
        assert watchdog.sample(moment(now, jobs)) == []
    # Once the holders are gone, the room is there: both must be placed within the bound.
    pending = jobs[2:]
    assert watchdog.sample(moment(100.0, pending)) == []
    assert watchdog.sample(moment(130.0, pending)) == []
    found = watchdog.sample(moment(161.0, pending))
    assert sorted(line.split()[2] for line in found) == ["b", "s"]


def test_pending_streaks_break_when_no_leader_answers_or_no_node_is_healthy() -> None:
    watchdog = JobWatchdog(BOUNDS, {"a": plan("a")})
    job = OpenJob("j1", "a", "pending", queue_position=1)
    assert watchdog.sample(moment(0.0, [job])) == []
    assert watchdog.sample(moment(40.0, None)) == []
    assert watchdog.sample(moment(70.0, [job])) == []
    assert watchdog.sample(moment(100.0, [job], healthy={})) == []
    assert watchdog.sample(moment(120.0, [job])) == []
    assert len(watchdog.sample(moment(181.0, [job]))) == 1


def test_growth_uses_medians_of_the_first_and_last_fifths() -> None:
    flat = growth([(float(t), 100.0 + (t % 3)) for t in range(100)])
    assert flat is not None
    assert abs(flat.delta) <= 2
    assert growth([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) is None
    rising = growth([(float(t), float(t)) for t in range(0, 3600, 36)])
    assert rising is not None
    assert round(rising.slope_per_hour) == 3600


def test_resource_verdicts_judge_long_lived_daemons_only() -> None:
    leaking = DaemonSeries("node-1", 10)
    short_lived = DaemonSeries("node-2", 20)
    for t in range(0, 600, 10):
        leaking.add("rss_mib", t, 80 + t / 5)  # +120 MiB over the soak
        leaking.add("fds", t, 30)
        if t < 100:
            short_lived.add("rss_mib", t, 80 + t)
    summaries, violations = resource_verdicts(
        [leaking, short_lived], warmup_ends=60.0, min_span=200.0, bounds=BOUNDS
    )
    assert [s["judged"] for s in summaries] == [True, False]
    assert len(violations) == 1
    assert violations[0].startswith("node-1 (pid 10) rss_mib grew")
