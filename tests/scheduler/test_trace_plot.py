"""The trace replay's plot: its series are right, ``--plot`` says how to get matplotlib
before replaying anything when it is missing, and draws a PNG when it is there."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.bench import bench_trace_replay
from tests.bench.trace_jobs import US, TraceJob, TraceNode
from tests.bench.trace_metrics import group_shares
from tests.bench.trace_plot import (
    MATPLOTLIB_MISSING,
    allocation_over_time,
    delay_cdf,
    plot_replays,
)
from tests.bench.trace_policies import EasyBackfill, FifoFirstFit
from tests.bench.trace_sim import ReplayResult, replay

GIB = 2**30
MINUTE = 60 * US
NODE = (TraceNode("node-0", "G2", 8, 96_000, 384 * GIB),)


def job(name: str, order: int, arrival: int, duration: int, gpus: int) -> TraceJob:
    return TraceJob(
        id=name, order=order, arrival_us=arrival, duration_us=duration, gpus=gpus,
        cpu_milli=1000, memory_bytes=GIB, nodes=1, user=f"user-{name}",
        group=f"group-0{order % 2}",
    )  # fmt: skip


def small_replay() -> ReplayResult:
    # a: 8 GPUs for 30 min from 0; b arrives at 10 min, runs 15 min once a ends.
    jobs = (job("a", 0, 0, 30 * MINUTE, 8), job("b", 1, 10 * MINUTE, 15 * MINUTE, 4))
    return replay(NODE, jobs, FifoFirstFit())


def test_the_series_follow_the_runs() -> None:
    result = small_replay()
    delays, fractions = delay_cdf(result)
    assert delays == [0.0, 20.0]  # b started when a ended, at 30 min
    assert fractions == [0.5, 1.0]
    hours, allocated = allocation_over_time(result, bin_minutes=15)
    assert hours == [0.25, 0.5, 0.75]
    assert allocated == [1.0, 1.0, 0.5]  # 8 of 8 GPUs, then b's 4
    assert set(group_shares(result)) == {"group-00", "group-01"}


def test_plot_without_matplotlib_fails_at_once_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed

    def no_replay(*args: object) -> None:
        raise AssertionError("the replay ran before the plot was known impossible")

    monkeypatch.setattr(bench_trace_replay, "read_pods", no_replay)
    with pytest.raises(SystemExit, match="--plot needs matplotlib") as raised:
        bench_trace_replay.main(["--plot", str(tmp_path / "replay.png")])
    assert str(raised.value) == MATPLOTLIB_MISSING
    assert "murmur-cluster[bench]" in MATPLOTLIB_MISSING


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the bench extra; not needed by the tests
    jobs = (job("a", 0, 0, 30 * MINUTE, 8), job("b", 1, 10 * MINUTE, 15 * MINUTE, 4))
    results = [small_replay(), replay(NODE, jobs, EasyBackfill())]
    path = tmp_path / "img" / "replay.png"
    plot_replays(results, path, title="two jobs")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
