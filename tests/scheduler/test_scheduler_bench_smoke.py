"""The scheduler benchmark still runs (tiny sizes, no timing asserted)."""

from __future__ import annotations

import pytest

from tests.bench import bench_scheduler


def test_benchmark_runs_and_prints_its_tables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["bench_scheduler", "--quick", "--pending", "300"])
    bench_scheduler.main()
    out = capsys.readouterr().out
    assert out.count("| murmur (DEFAULT_POLICY) |") == len(bench_scheduler.SCENARIOS)
    assert out.count("| FIFO first-fit |") == len(bench_scheduler.SCENARIOS)
    assert "| placement throughput |" in out
