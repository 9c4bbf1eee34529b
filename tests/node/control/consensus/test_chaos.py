"""The short chaos run: a five-node cluster under a stream of submissions through
random nodes, the leader killed, another node killed and restarted and (where
network namespaces can be made) the leader and one more node cut off from the
majority. Then everything heals and settles, and the checker reads the whole
history: no acknowledged job lost, no job running twice at once, no GPU given
twice, no process left behind.

The harness runs as a process of its own (``python -m tests.chaos.run --short``):
it re-executes itself inside the namespaces' hub when partitions are possible,
which this test process cannot do. ``make chaos`` runs the long version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fault_runs import run_fault_harness

pytestmark = [pytest.mark.slow, pytest.mark.serial]

RUN_TIMEOUT_SECONDS = 280


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 20)
def test_chaos_short_run_loses_nothing_runs_nothing_twice_and_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    run = run_fault_harness(
        "tests.chaos.run",
        ["--short", "--workdir", str(tmp_path / "chaos"), "--keep"],
        report_path=tmp_path / "report.json",
        timeout=RUN_TIMEOUT_SECONDS,
        what="chaos run",
    )
    report, output = run.report, run.output
    assert report["failed_to_run"] == [], output
    (session,) = report["sessions"]
    assert report["partitions"] == run.partitions_possible, output
    assert len(session["rounds"]) == (3 if report["partitions"] else 2)
    assert all(r["leader_after"] for r in session["rounds"]), output
    counts = session["counts"]
    assert counts["lost_acknowledged"] == 0, output
    assert counts["duplicate_jobs"] == 0, output
    assert counts["concurrent_runs"] == 0, output
    assert counts["gpu_conflicts"] == 0, output
    assert counts["orphans"] == 0, output
    assert session["violations"] == [], output
    # The run did what it is for: jobs were acknowledged across the faults, and all ended.
    assert counts["acknowledged"] >= 20, output
    assert session["settled"], output
    assert run.returncode == 0, output
