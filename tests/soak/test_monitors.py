"""The soak's live watch on executions judges a killed run's end as the final check
does: at its exit record, not a beat's slack later."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.chaos.history import boot_wall_time
from tests.soak.monitors import ExecutionWatch

T = 1_800_000_000.0


def ticks_at(when: float) -> int:
    """A process start time (clock ticks since boot) for a process forked at ``when``."""
    return round((when - boot_wall_time()) * os.sysconf("SC_CLK_TCK"))


def write_runs(results: Path) -> None:
    """Job a's run, killed without an end line (last beat at T+1), held GPU 0 of
    node-2; job b's run got that GPU at T+1.5 and ended."""
    results.mkdir()
    (results / "a.log").write_text(
        f"start a run-a node-2 4000 {ticks_at(T)} 0 {T}\nbeat run-a 4000 {T + 1}\n"
    )
    (results / "b.log").write_text(
        f"start b run-b node-2 4001 {ticks_at(T + 1.5)} 0 {T + 1.5}\nend run-b 4001 {T + 3} ok\n"
    )


def watch(tmp_path: Path) -> ExecutionWatch:
    return ExecutionWatch(tmp_path / "results", marker="no-such-marker", lab_root=tmp_path / "lab")


def test_a_killed_run_without_an_exit_record_is_held_a_beat_longer(tmp_path: Path) -> None:
    write_runs(tmp_path / "results")

    found = watch(tmp_path).check()

    assert [overlap.job_id for overlap in found] == ["node-2 GPU 0"]


def test_a_killed_run_ends_at_its_exit_record(tmp_path: Path) -> None:
    write_runs(tmp_path / "results")
    run_dir = tmp_path / "lab" / "node-2" / "runs" / "run-a"
    run_dir.mkdir(parents=True)
    (run_dir / "exit.json").write_text(json.dumps({"exit_code": 137, "finished_at": T + 1.48}))

    assert watch(tmp_path).check() == []
