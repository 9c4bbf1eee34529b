"""HostLoadSampler over this Linux host's /proc, and over /proc files written by the test."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.agent.host_load import HostLoad, HostLoadSampler

KIB = 1024
_STAT_REST = "cpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\nctxt 678\n"


def _write_stat(proc: Path, ticks: list[int]) -> None:
    """A /proc/stat whose aggregate line has user nice system idle iowait irq softirq steal."""
    (proc / "stat").write_text(f"cpu  {' '.join(map(str, ticks))} 0 0\n{_STAT_REST}")


def _write_meminfo(proc: Path, total_kib: int, available_kib: int | None) -> None:
    lines = [f"MemTotal:       {total_kib} kB", "MemFree:          1000 kB"]
    if available_kib is not None:
        lines.append(f"MemAvailable:   {available_kib} kB")
    (proc / "meminfo").write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_samples_this_host() -> None:
    sampler = HostLoadSampler()

    first = sampler.sample()
    second = first
    for _ in range(200):  # /proc/stat moves every jiffy; stop after 2 s at the most
        time.sleep(0.01)
        second = sampler.sample()
        if second.cpu_percent is not None:
            break

    assert first.cpu_percent is None
    assert first.cpu_count == os.cpu_count()
    assert first.memory_total_bytes > 0
    assert first.memory_used_bytes is not None
    assert 0 < first.memory_used_bytes <= first.memory_total_bytes
    assert second.cpu_percent is not None
    assert 0.0 <= second.cpu_percent <= 100.0
    assert second.memory_total_bytes == first.memory_total_bytes


def test_cpu_percent_is_busy_share_of_the_interval(tmp_path: Path) -> None:
    _write_meminfo(tmp_path, total_kib=1000, available_kib=250)
    sampler = HostLoadSampler(proc_root=tmp_path)
    _write_stat(tmp_path, [100, 0, 50, 800, 50, 0, 0, 0])
    sampler.sample()
    # +60 user, +20 system, +100 idle, +20 iowait: 80 busy of 200.
    _write_stat(tmp_path, [160, 0, 70, 900, 70, 0, 0, 0])

    load = sampler.sample()

    assert load == HostLoad(
        cpu_count=os.cpu_count() or 1,
        cpu_percent=40.0,
        memory_total_bytes=1000 * KIB,
        memory_used_bytes=750 * KIB,
    )


def test_no_elapsed_time_keeps_the_baseline(tmp_path: Path) -> None:
    sampler = HostLoadSampler(proc_root=tmp_path)
    _write_stat(tmp_path, [0, 0, 0, 100, 0, 0, 0, 0])
    sampler.sample()

    unchanged = sampler.sample()
    _write_stat(tmp_path, [50, 0, 0, 150, 0, 0, 0, 0])
    later = sampler.sample()

    assert unchanged.cpu_percent is None
    assert later.cpu_percent == 50.0


def test_counters_going_backwards_give_none_then_recover(tmp_path: Path) -> None:
    sampler = HostLoadSampler(proc_root=tmp_path)
    _write_stat(tmp_path, [500, 0, 0, 500, 0, 0, 0, 0])
    sampler.sample()
    _write_stat(tmp_path, [10, 0, 0, 10, 0, 0, 0, 0])

    backwards = sampler.sample()
    _write_stat(tmp_path, [20, 0, 0, 20, 0, 0, 0, 0])
    recovered = sampler.sample()

    assert backwards.cpu_percent is None
    assert recovered.cpu_percent == 50.0


def test_old_kernel_stat_with_four_fields(tmp_path: Path) -> None:
    sampler = HostLoadSampler(proc_root=tmp_path)
    (tmp_path / "stat").write_text("cpu 10 0 10 80\n")
    sampler.sample()
    (tmp_path / "stat").write_text("cpu 20 0 20 90\n")

    assert sampler.sample().cpu_percent == pytest.approx(100.0 * 20 / 30)


def test_without_proc_values_are_none_and_total_comes_from_sysconf(tmp_path: Path) -> None:
    sampler = HostLoadSampler(proc_root=tmp_path / "missing")

    first = sampler.sample()
    second = sampler.sample()

    assert first.cpu_percent is None
    assert second.cpu_percent is None
    assert second.memory_used_bytes is None
    assert second.memory_total_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert second.cpu_count == (os.cpu_count() or 1)


def test_meminfo_without_memavailable_leaves_used_unknown(tmp_path: Path) -> None:
    _write_meminfo(tmp_path, total_kib=2048, available_kib=None)

    load = HostLoadSampler(proc_root=tmp_path).sample()

    assert load.memory_total_bytes == 2048 * KIB
    assert load.memory_used_bytes is None


def test_garbled_stat_gives_none(tmp_path: Path) -> None:
    sampler = HostLoadSampler(proc_root=tmp_path)
    (tmp_path / "stat").write_text("cpu  1 2 three 4 5\n")
    sampler.sample()
    (tmp_path / "stat").write_text("")

    assert sampler.sample().cpu_percent is None


_ticks = st.lists(st.integers(min_value=0, max_value=10**9), min_size=8, max_size=8)


@given(before=_ticks, increments=_ticks)
def test_cpu_percent_stays_within_bounds(before: list[int], increments: list[int]) -> None:
    # A function-scoped fixture would be shared by every example, so each makes its own.
    with tempfile.TemporaryDirectory() as directory:
        proc = Path(directory)
        sampler = HostLoadSampler(proc_root=proc)
        _write_stat(proc, before)
        sampler.sample()
        _write_stat(proc, [start + step for start, step in zip(before, increments, strict=True)])

        percent = sampler.sample().cpu_percent

    elapsed = sum(increments)
    if elapsed == 0:
        assert percent is None
    else:
        busy = elapsed - increments[3] - increments[4]
        assert percent is not None
        assert percent == pytest.approx(100.0 * busy / elapsed)
        assert 0.0 <= percent <= 100.0
