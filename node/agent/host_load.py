"""How busy this host's CPUs and memory are, for gossip and ``murmur top``.

Reads ``/proc/stat`` and ``/proc/meminfo``: two small files from the kernel's
memory, so a sample costs well under a millisecond and may be taken every few
seconds from a worker thread. Where ``/proc`` is missing (not Linux) the values it
alone can give are None.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

# Fields of the aggregate "cpu" line of /proc/stat, see proc(5). guest and
# guest_nice are already counted in user and nice, so they are left out.
_CPU_TIME_FIELDS = 8  # user nice system idle iowait irq softirq steal
_IDLE_FIELDS = (3, 4)  # idle, iowait


@dataclass(frozen=True)
class HostLoad:
    """One sample of the host's CPU and memory use."""

    cpu_count: int
    """Logical CPUs of the host (``os.cpu_count()``)."""
    cpu_percent: float | None
    """Busy share of all CPUs since the previous sample, 0-100; None on the first
    sample, when no time has passed, or without ``/proc/stat``."""
    memory_total_bytes: int
    """Physical memory; 0 when the host does not say."""
    memory_used_bytes: int | None
    """MemTotal - MemAvailable (what the kernel cannot hand to a new job);
    None without ``/proc/meminfo``."""


@dataclass(frozen=True)
class _CpuTimes:
    busy: int
    total: int


class HostLoadSampler:
    """Takes ``HostLoad`` samples; CPU use is measured between consecutive samples.

    Thread-safe, so samples may come from ``asyncio.to_thread`` workers.
    """

    def __init__(self, *, proc_root: Path = Path("/proc")) -> None:
        """Start with no baseline: the first sample has ``cpu_percent`` None.

        Args:
            proc_root: where procfs is mounted; tests point it at a directory of
                their own files.
        """
        self._proc_root = proc_root
        self._lock = threading.Lock()
        self._previous_cpu: _CpuTimes | None = None

    def sample(self) -> HostLoad:
        """Read the current load; cheap (two small procfs reads, no waiting)."""
        cpu_times = _read_cpu_times(self._proc_root / "stat")
        with self._lock:
            cpu_percent = _busy_percent(self._previous_cpu, cpu_times)
            # Keep the older baseline while no time has passed, so the next
            # sample measures over a real interval instead of reporting None again.
            if not _same_interval(self._previous_cpu, cpu_times):
                self._previous_cpu = cpu_times
        memory_total, memory_used = _read_memory(self._proc_root / "meminfo")
        return HostLoad(
            cpu_count=os.cpu_count() or 1,
            cpu_percent=cpu_percent,
            memory_total_bytes=memory_total,
            memory_used_bytes=memory_used,
        )


def _busy_percent(previous: _CpuTimes | None, current: _CpuTimes | None) -> float | None:
    if previous is None or current is None:
        return None
    total = current.total - previous.total
    busy = current.busy - previous.busy
    # A counter that went backwards (CPU hot-unplug, a different /proc) gives no
    # answer rather than a wrong one.
    if total <= 0 or busy < 0 or busy > total:
        return None
    return 100.0 * busy / total


def _same_interval(previous: _CpuTimes | None, current: _CpuTimes | None) -> bool:
    """True when nothing has elapsed since the baseline, so it is worth keeping."""
    return previous is not None and current is not None and previous.total == current.total


def _read_cpu_times(stat_path: Path) -> _CpuTimes | None:
    try:
        with stat_path.open(encoding="ascii", errors="replace") as stat:
            first_line = stat.readline()
    except OSError:
        return None
    fields = first_line.split()
    # Kernels older than 2.6 give only user, nice, system and idle.
    if len(fields) < 5 or fields[0] != "cpu":
        return None
    try:
        ticks = [int(value) for value in fields[1 : 1 + _CPU_TIME_FIELDS]]
    except ValueError:
        return None
    total = sum(ticks)
    idle = sum(ticks[field] for field in _IDLE_FIELDS if field < len(ticks))
    return _CpuTimes(busy=total - idle, total=total)


def _read_memory(meminfo_path: Path) -> tuple[int, int | None]:
    """(total, used) in bytes from /proc/meminfo, else (sysconf total, None)."""
    try:
        text = meminfo_path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return _sysconf_memory_total(), None
    kib: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if key in ("MemTotal", "MemAvailable") and fields and fields[0].isdigit():
            kib[key] = int(fields[0])
    if "MemTotal" not in kib:
        return _sysconf_memory_total(), None
    total = kib["MemTotal"] * 1024
    if "MemAvailable" not in kib:
        return total, None
    return total, total - kib["MemAvailable"] * 1024


def _sysconf_memory_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0
