"""The job's cgroup: the memory and CPU limits of one process run, where the host
lets the supervisor enforce them.

The supervisor (:mod:`murmur.node.agent.runtimes.supervisor`) creates it under
``murmur/<run_id>`` before it starts the job, moves itself in so that the job
inherits it from its first instruction, and moves itself back out once the job
runs. cgroup v2 where the host mounts it at ``/sys/fs/cgroup``
(:class:`RunCgroup`), one directory per controller on a cgroup v1 host
(:class:`RunCgroupV1`). After the job ended it tells whether the kernel's OOM
killer struck, kills what is left inside and removes the directories.

It imports only the standard library and :mod:`murmur.node.agent.runtimes.run_files`:
the supervisor imports it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from murmur.node.agent.runtimes.run_files import Launch

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "murmur"


def _cgroup2_at_root() -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and fields[1] == str(CGROUP_ROOT):
                    return fields[2] == "cgroup2"
    except OSError:
        return False
    return False


def _own_cgroup() -> Path | None:
    """The supervisor's cgroup v2 directory (from ``/proc/self/cgroup``, line ``0::/path``)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("0::"):
                    return CGROUP_ROOT / line[3:].strip().lstrip("/")
    except OSError:
        return None
    return None


CPU_PERIOD_US = 100_000
"""The CFS period a CPU limit is expressed in (cgroup v2 ``cpu.max``, v1 ``cfs_*``)."""


def _cpu_quota_us(cpus: float) -> int:
    """The CFS quota per :data:`CPU_PERIOD_US` that grants ``cpus`` CPUs (1 ms at least)."""
    return max(1000, int(cpus * CPU_PERIOD_US))


def _oom_kill_count(events: Path) -> int:
    """The ``oom_kill`` counter of a cgroup's ``memory.events`` (v2) or
    ``memory.oom_control`` (v1) file; 0 when it cannot be read."""
    try:
        for line in events.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return 0
    return 0


def _remove_cgroup_dir(path: Path, deadline: float, kill_left: Callable[[], None]) -> None:
    """Removes ``path`` once the processes left in it are gone, calling ``kill_left``
    before each try, until ``deadline`` (best effort)."""
    while True:
        kill_left()
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


class RunCgroup:
    """The job's cgroup v2 (``/sys/fs/cgroup/murmur/<run_id>``): memory and CPU limits
    (:class:`RunCgroupV1` on a cgroup v1 host).

    The job must be inside before it runs a single instruction, or what it
    forks first escapes the limit. So the supervisor moves itself in, starts
    the job (which inherits the cgroup), and moves itself back out.
    """

    def __init__(self, path: Path, home: Path) -> None:
        self.path = path
        self._home = home
        self._supervisor_inside = True

    @classmethod
    def enter_new(cls, launch: Launch, wanted: list[str]) -> tuple[RunCgroup | None, str]:
        """Creates the run's cgroup with the launch's limits (the ``wanted``
        controllers) and moves the supervisor into it. Returns it, or None and why
        the limits are not enforced."""
        limits = " and ".join(wanted)
        home = _own_cgroup()
        if home is None:
            return None, f"{limits} limit not enforced: the supervisor's cgroup is unknown"
        parent = CGROUP_ROOT / CGROUP_PARENT
        path = parent / launch.run_id
        try:
            parent.mkdir(exist_ok=True)
            for directory in (CGROUP_ROOT, parent):
                control = directory / "cgroup.subtree_control"
                enabled = control.read_text().split()
                missing = [name for name in wanted if name not in enabled]
                if missing:
                    control.write_text(" ".join(f"+{name}" for name in missing))
            path.mkdir(exist_ok=True)
            if launch.memory_bytes is not None:
                (path / "memory.max").write_text(str(launch.memory_bytes))
            if launch.cpus is not None:
                quota = _cpu_quota_us(launch.cpus)
                (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            (path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None, f"{limits} limit not enforced: cannot set up cgroup v2 ({exc})"
        return cls(path, home), ""

    def leave(self) -> str:
        """Moves the supervisor back where it came from, once the job is inside.
        Returns what went wrong, if anything."""
        try:
            (self._home / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            return f"the supervisor stays in the job's cgroup ({exc}): it counts against the limit"
        self._supervisor_inside = False
        return ""

    def oom_kills(self) -> int:
        return _oom_kill_count(self.path / "memory.events")

    def remove(self) -> None:
        """Kills what is left inside and removes the directory (best effort)."""
        if self._supervisor_inside:
            return  # cgroup.kill would kill the supervisor too; the job is already gone
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")
        _remove_cgroup_dir(self.path, time.monotonic() + 2.0, lambda: None)


def _v1_mounts() -> dict[str, Path]:
    """Controller name → mount point of each cgroup v1 hierarchy (``/proc/self/mounts``)."""
    found: dict[str, Path] = {}
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 4 and fields[2] == "cgroup":
                    for option in fields[3].split(","):
                        found.setdefault(option, Path(fields[1]))
    except OSError:
        return {}
    return found


def _v1_own_paths() -> dict[str, str]:
    """Controller name → the supervisor's cgroup path in that v1 hierarchy."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(","):
                    if controller:
                        paths[controller] = path.lstrip("/")
    except (OSError, ValueError):
        return {}
    return paths


class RunCgroupV1:
    """The job's cgroups on a cgroup v1 host: one directory per controller
    (``<memory mount>/murmur/<run_id>``, ``<cpu mount>/murmur/<run_id>``), entered
    and left the way :class:`RunCgroup` does it, for the same reason."""

    def __init__(self, paths: dict[str, Path], homes: dict[str, Path]) -> None:
        self._paths = paths
        self._homes = homes
        self._supervisor_inside = True

    @classmethod
    def enter_new(cls, launch: Launch, wanted: list[str]) -> tuple[RunCgroupV1 | None, str]:
        limits = " and ".join(wanted)
        mounts, own = _v1_mounts(), _v1_own_paths()
        missing = [name for name in wanted if name not in mounts or name not in own]
        if missing:
            return None, (
                f"{limits} limit not enforced: no cgroup v2 at {CGROUP_ROOT} and no cgroup v1 "
                f"{' or '.join(missing)} hierarchy"
            )
        paths = {name: mounts[name] / CGROUP_PARENT / launch.run_id for name in wanted}
        homes = {name: mounts[name] / own[name] for name in wanted}
        made: list[Path] = []
        try:
            for name, path in paths.items():
                path.parent.mkdir(exist_ok=True)
                path.mkdir(exist_ok=True)
                made.append(path)
                if name == "memory":
                    (path / "memory.limit_in_bytes").write_text(str(launch.memory_bytes))
                else:
                    assert launch.cpus is not None
                    (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                    (path / "cpu.cfs_quota_us").write_text(str(_cpu_quota_us(launch.cpus)))
            for path in paths.values():
                (path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            for home in homes.values():
                with contextlib.suppress(OSError):
                    (home / "cgroup.procs").write_text(str(os.getpid()))
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            return None, f"{limits} limit not enforced: cannot set up cgroup v1 ({exc})"
        return cls(paths, homes), ""

    def leave(self) -> str:
        problems = []
        for name, home in self._homes.items():
            try:
                (home / "cgroup.procs").write_text(str(os.getpid()))
            except OSError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            return (
                f"the supervisor stays in the job's cgroup ({'; '.join(problems)}): "
                "it counts against the limit"
            )
        self._supervisor_inside = False
        return ""

    def oom_kills(self) -> int:
        path = self._paths.get("memory")
        return 0 if path is None else _oom_kill_count(path / "memory.oom_control")

    def remove(self) -> None:
        """Kills what is left inside (v1 has no ``cgroup.kill``) and removes the
        directories (best effort)."""
        if self._supervisor_inside:
            return
        deadline = time.monotonic() + 2.0
        for path in self._paths.values():
            _remove_cgroup_dir(path, deadline, functools.partial(_kill_all_in, path))


def _kill_all_in(path: Path) -> None:
    """SIGKILL every process listed in a v1 cgroup directory."""
    try:
        pids = (path / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def enter_run_cgroup(launch: Launch) -> tuple[RunCgroup | RunCgroupV1 | None, str]:
    """The run's cgroup with the launch's limits, the supervisor inside it: cgroup
    v2 where the host has it, else cgroup v1. Returns it, or None and why the
    limits are not enforced (empty when there are none to enforce)."""
    wanted = []
    if launch.memory_bytes is not None:
        wanted.append("memory")
    if launch.cpus is not None:
        wanted.append("cpu")
    if not wanted:
        return None, ""
    if not _cgroup2_at_root():
        return RunCgroupV1.enter_new(launch, wanted)
    return RunCgroup.enter_new(launch, wanted)
