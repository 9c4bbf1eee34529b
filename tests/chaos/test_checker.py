"""The chaos checker's rules on synthetic histories: each rule must catch what it
is for and must not flag what is allowed."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from tests.chaos.checker import (
    BEAT_SLACK_SECONDS,
    FinalJob,
    FinalRun,
    LiveProcess,
    check,
    concurrent_runs,
    execution_end,
    gpu_conflicts,
    orphans,
)
from tests.chaos.history import Execution, Submission, parse_execution_lines, read_executions


def execution(
    job: str = "j1",
    run: str = "r1",
    *,
    start: float,
    end: float | None,
    last_seen: float | None = None,
    node: str = "node-1",
    pid: int = 100,
    gpus: tuple[int, ...] = (),
) -> Execution:
    return Execution(
        job_id=job,
        run_id=run,
        node=node,
        pid=pid,
        pid_start=pid * 10,
        gpus=gpus,
        started_at=start,
        last_seen=last_seen if last_seen is not None else (end if end is not None else start),
        ended_at=end,
        how="ok" if end is not None else "",
    )


def submission(number: int, job_id: str = "") -> Submission:
    return Submission(key=f"k{number}", name=f"job-{number}", submitted_at=0.0, job_id=job_id)


def job(job_id: str, name: str, state: str = "succeeded", runs: int = 1) -> FinalJob:
    return FinalJob(
        id=job_id,
        name=name,
        state=state,
        runs=tuple(FinalRun(f"{job_id}-r{i}", "node-1", state) for i in range(runs)),
    )


# -- lost and duplicate jobs ---------------------------------------------------------


def test_an_acknowledged_job_missing_from_the_cluster_is_lost() -> None:
    report = check(
        submissions=[submission(1, "a"), submission(2, "b")],
        final_jobs=[job("a", "job-1")],
        executions=[],
        run_exits={},
        live_at_settle=[],
        live_after_teardown=[],
    )
    assert report.lost_acknowledged == ["b"]
    assert report.violations == ["lost acknowledged job b"]


def test_an_unacknowledged_submission_may_be_missing_or_found_by_name() -> None:
    report = check(
        submissions=[submission(1), submission(2), submission(3, "c")],
        final_jobs=[job("x", "job-2"), job("c", "job-3")],
        executions=[],
        run_exits={},
        live_at_settle=[],
        live_after_teardown=[],
    )
    assert report.lost_acknowledged == []
    assert (report.unknown, report.unknown_found, report.acknowledged) == (2, 1, 1)
    assert report.violations == []


def test_one_key_that_made_two_jobs_is_a_violation() -> None:
    report = check(
        submissions=[submission(1, "a")],
        final_jobs=[job("a", "job-1"), job("a2", "job-1"), job("z", "someone-else")],
        executions=[],
        run_exits={},
        live_at_settle=[],
        live_after_teardown=[],
    )
    assert report.duplicate_jobs == {"job-1": ["a", "a2"]}
    assert len(report.violations) == 1


# -- running twice at once -----------------------------------------------------------


def test_two_runs_of_one_job_with_overlapping_intervals_are_caught() -> None:
    first = execution(run="r1", start=10.0, end=14.0, pid=1)
    second = execution(run="r2", start=13.0, end=15.0, pid=2, node="node-2")
    found = concurrent_runs([second, first], {}, set())
    assert len(found) == 1
    assert (found[0].first, found[0].second) == (first, second)
    assert found[0].evidence == "end-line/end-line"


def test_sequential_and_touching_runs_and_other_jobs_do_not_overlap() -> None:
    runs = [
        execution(run="r1", start=10.0, end=14.0, pid=1),
        execution(run="r2", start=14.0, end=15.0, pid=2),  # touches r1's end
        execution(run="r3", start=20.0, end=21.0, pid=3),
        execution(job="other", run="x", start=10.5, end=30.0, pid=4),
    ]
    assert concurrent_runs(runs, {}, set()) == []


def test_a_long_early_run_overlapping_a_later_one_past_a_short_one_is_caught() -> None:
    runs = [
        execution(run="long", start=0.0, end=100.0, pid=1),
        execution(run="short", start=1.0, end=2.0, pid=2),
        execution(run="late", start=50.0, end=60.0, pid=3),
    ]
    pairs = {(o.first.run_id, o.second.run_id) for o in concurrent_runs(runs, {}, set())}
    assert pairs == {("long", "short"), ("long", "late")}


def test_the_same_run_started_twice_at_once_is_caught() -> None:
    runs = [
        execution(run="r1", start=0.0, end=5.0, pid=1),
        execution(run="r1", start=1.0, end=4.0, pid=2, node="node-2"),
    ]
    assert len(concurrent_runs(runs, {}, set())) == 1


def test_a_run_without_an_end_line_lasts_until_its_last_beat_plus_the_slack() -> None:
    killed = execution(run="r1", start=0.0, end=None, last_seen=5.0, pid=1)
    assert execution_end(killed, {}, set()) == (5.0 + BEAT_SLACK_SECONDS, "last-beat")
    inside = execution(run="r2", start=5.0 + BEAT_SLACK_SECONDS / 2, end=9.0, pid=2)
    after = execution(run="r2", start=5.0 + BEAT_SLACK_SECONDS + 0.01, end=9.0, pid=2)
    assert len(concurrent_runs([killed, inside], {}, set())) == 1
    assert concurrent_runs([killed, after], {}, set()) == []


def test_a_later_exit_record_extends_a_run_without_an_end_line() -> None:
    killed = execution(run="r1", start=0.0, end=None, last_seen=5.0, pid=1)
    second = execution(run="r2", start=8.0, end=9.0, pid=2)
    assert concurrent_runs([killed, second], {}, set()) == []
    found = concurrent_runs([killed, second], {"r1": 8.5}, set())
    assert len(found) == 1
    assert found[0].evidence == "exit.json/end-line"
    # An exit record earlier than the last beat never shortens the run.
    assert execution_end(killed, {"r1": 1.0}, set())[0] == 5.0 + BEAT_SLACK_SECONDS


def test_an_exit_record_after_the_last_beat_ends_the_run_there() -> None:
    """Regression (found by the soak): a run cancelled with SIGKILL, reaped by its
    supervisor 0.01 s after its last beat, was held running for the whole beat slack,
    so the run given its GPU 0.25 s after the reaping was flagged as overlapping it."""
    killed = execution(run="r1", start=0.0, end=None, last_seen=5.0, pid=1)
    reaped_at = 5.01
    assert execution_end(killed, {"r1": reaped_at}, set()) == (reaped_at, "exit.json")
    next_holder = execution(run="r2", start=reaped_at + 0.25, end=9.0, pid=2)
    assert concurrent_runs([killed, next_holder], {"r1": reaped_at}, set()) == []
    # Without the exit record, the slack still holds it running.
    assert len(concurrent_runs([killed, next_holder], {}, set())) == 1


def test_a_run_whose_process_is_still_alive_never_ends() -> None:
    alive = execution(run="r1", start=0.0, end=None, last_seen=1.0, pid=1)
    much_later = execution(run="r2", start=1000.0, end=1001.0, pid=2)
    assert execution_end(alive, {}, {(1, 10)}) == (math.inf, "alive")
    assert len(concurrent_runs([alive, much_later], {}, {(1, 10)})) == 1
    # The same pid with another start time is another process: the run is over.
    assert concurrent_runs([alive, much_later], {}, {(1, 11)}) == []


# -- GPUs ----------------------------------------------------------------------------


def test_one_gpu_held_by_two_runs_at_once_on_one_node_is_caught() -> None:
    runs = [
        execution(job="a", run="ra", start=0.0, end=5.0, pid=1, gpus=(0,)),
        execution(job="b", run="rb", start=4.0, end=6.0, pid=2, gpus=(1, 0)),
        execution(job="c", run="rc", start=4.0, end=6.0, pid=3, gpus=(1,), node="node-2"),
        execution(job="d", run="rd", start=5.0, end=7.0, pid=4, gpus=(0,)),
    ]
    found = gpu_conflicts(runs, {}, set())
    assert [(o.job_id, o.first.job_id, o.second.job_id) for o in found] == [
        ("node-1 GPU 0", "a", "b"),
        ("node-1 GPU 0", "b", "d"),
    ]


# -- orphans -------------------------------------------------------------------------


def test_orphans_are_live_runs_of_ended_jobs_and_anything_left_after_teardown() -> None:
    jobs = {"done": job("done", "n1"), "running": job("running", "n2", state="running")}
    settle = [
        LiveProcess(1, 10, "job", "done"),
        LiveProcess(2, 20, "job", "running"),
        LiveProcess(3, 30, "job", "unknown-to-the-cluster"),
    ]
    after = [
        LiveProcess(4, 40, "lab", cmdline="python -S -P -m murmur.node.agent.runtimes.forkserver")
    ]
    assert [p.pid for p in orphans(settle, after, jobs)] == [1, 3, 4]
    assert orphans([LiveProcess(2, 20, "job", "running")], [], jobs) == []


def test_a_clean_history_has_no_violations_and_counts_reruns() -> None:
    report = check(
        submissions=[submission(1, "a"), submission(2, "b")],
        final_jobs=[job("a", "job-1", runs=2), job("b", "job-2", state="failed")],
        executions=[
            execution(job="a", run="a-r0", start=0.0, end=None, last_seen=1.0, pid=1),
            execution(job="a", run="a-r1", start=20.0, end=21.0, pid=2),
            execution(job="b", run="b-r0", start=0.0, end=1.0, pid=3),
        ],
        run_exits={"a-r0": 3.0},
        live_at_settle=[],
        live_after_teardown=[],
    )
    assert report.violations == []
    assert report.anomalies == []
    assert (report.succeeded, report.failed, report.rerun) == (1, 1, 1)
    assert report.executions_without_end == 1


def test_a_success_without_an_execution_that_ended_ok_is_an_anomaly() -> None:
    report = check(
        submissions=[submission(1, "a")],
        final_jobs=[job("a", "job-1")],
        executions=[execution(job="a", run="r", start=0.0, end=None, pid=1)],
        run_exits={},
        live_at_settle=[],
        live_after_teardown=[],
    )
    assert report.anomalies == ["job a succeeded without an execution that ended ok"]
    assert report.violations == []


# -- the execution file --------------------------------------------------------------


def test_execution_lines_are_parsed_per_process_and_torn_lines_reported() -> None:
    lines = [
        "start j1 r1 node-3 100 5000 0,1 10.0",
        "beat r1 100 10.25",
        "start j1 r2 node-4 200 6000 - 11.0",
        "term r1 100 10.4",
        "beat r1 100 10.5",
        "end r2 200 12.0 ok",
        "beat r1 1",  # torn by a kill -9 mid-write
    ]
    found, bad = parse_execution_lines(lines)
    assert bad == ["beat r1 1"]
    first, second = found
    assert (first.node, first.gpus, first.pid_start) == ("node-3", (0, 1), 5000)
    assert (first.started_at, first.last_seen, first.ended_at) == (10.0, 10.5, None)
    assert first.ignored_sigterm
    assert (second.gpus, second.ended_at, second.how) == ((), 12.0, "ok")


@pytest.mark.parametrize("line", ["end r9 1 3.0 ok", "start j1 r1 node-1 1 2 - notatime", ""])
def test_lines_that_name_no_known_process_or_do_not_parse_are_reported(line: str) -> None:
    found, bad = parse_execution_lines([line])
    assert found == []
    assert bad == [line]


def test_a_run_counts_from_its_fork_when_that_is_before_its_start_line() -> None:
    first = execution(run="r1", start=0.0, end=10.0, pid=1)
    late_line = execution(run="r2", start=10.2, end=12.0, pid=2)
    assert concurrent_runs([first, late_line], {}, set()) == []
    late_line.forked_at = 9.9  # the interpreter took 0.3 s to write its first line
    (found,) = concurrent_runs([first, late_line], {}, set())
    assert found.second is late_line
    late_line.forked_at = 10.5  # a fork after the line (clock noise) never delays the start
    assert late_line.began == 10.2


def test_forked_at_comes_from_the_process_start_time(tmp_path: Path) -> None:
    (tmp_path / "j1.log").write_text("start j1 r1 node-1 7 250 - 1000.5\nend r1 7 1001.0 ok\n")
    ticks = os.sysconf("SC_CLK_TCK")
    (found,), bad = read_executions(tmp_path, boot_time=998.0)
    assert bad == []
    assert found.forked_at == pytest.approx(998.0 + 250 / ticks)
