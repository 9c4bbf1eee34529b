"""The short soak: 36 seconds of mixed load against a real 3-node cluster (bursts from
client processes, cancels, long and short jobs, failures on purpose, leader and
follower kills, stalls and, where network namespaces can be made, a partition),
checked continuously and at the end: no job stuck past its bound, none lost, none
run twice at once, status honest, daemon resources flat.

The soak runs as a process of its own (``python -m tests.soak.run``): it re-executes
itself inside the namespaces' hub when partitions are possible, which this test
process cannot do. ``make soak`` runs the long version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fault_runs import run_fault_harness

pytestmark = [pytest.mark.slow, pytest.mark.serial]

RUN_TIMEOUT_SECONDS = 420


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 30)
def test_short_soak_finds_no_stuck_lost_or_double_run_and_honest_status(tmp_path: Path) -> None:
    run = run_fault_harness(
        "tests.soak.run",
        ["--minutes", "0.6", "--nodes", "3", "--seed", "1", "--workdir", str(tmp_path / "soak")],
        report_path=tmp_path / "report.json",
        timeout=RUN_TIMEOUT_SECONDS,
        what="soak",
    )
    report, output = run.report, run.output
    assert "could_not_run" not in report, output
    assert report["violations"] == [], output
    checks, jobs, faults = report["checks"], report["jobs"], report["faults"]
    assert checks["stuck"] == 0, output
    assert checks["lost"] == 0, output
    assert checks["double_runs"] == 0, output
    assert checks["status_violations"] == 0, output
    assert checks["resource_violations"] == 0, output
    # The soak did what it is for: load, cancels and every kind of fault, all checked.
    assert report["partitions"] == run.partitions_possible, output
    assert jobs["acknowledged"] >= 50, output
    assert jobs["unfinished"] == 0, output
    assert report["cancels"]["acknowledged"] >= 3, output
    assert faults["kill_leader"] >= 1, output
    assert faults["kill_follower"] >= 1, output
    assert faults["stall"] >= 1, output
    assert faults["partition"] >= (1 if report["partitions"] else 0), output
    assert checks["status_observations"] >= 100, output
    assert checks["watchdog_samples"] >= 10, output
    assert checks["execution_checks"] >= 3, output
    assert any(summary["judged"] for summary in report["daemon_processes"]), output
    assert run.returncode == 0, output
