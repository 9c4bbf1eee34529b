"""What samples the cluster while the soak runs, feeding :mod:`tests.soak.checks`.

- :class:`LogWatch`: reads the nodes' logs as they grow: the terms each node led
  (``consensus.state`` records), its asyncio task counts (``daemon.stats``), the
  leader's recoveries of runs and any error records.
- :class:`StatusPoller`: GetStatus on every node the soak can reach, in a loop;
  knows the current leader and since when.
- :class:`JobPoller`: the leader's list of jobs not ended, every couple of seconds,
  into the job watchdog.
- :class:`ResourceSampler`: each daemon's RSS, open files and threads from ``/proc``.
- :class:`ExecutionWatch`: the jobs' execution files and live job processes: a
  job running twice at once, or a GPU given twice, as soon as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import murmur
from murmur.v1 import types_pb2
from tests.chaos.checker import Overlap, concurrent_runs, gpu_conflicts
from tests.chaos.cluster import ChaosCluster
from tests.chaos.history import Execution, boot_wall_time, parse_execution_lines
from tests.chaos.processes import harness_processes
from tests.soak.checks import (
    ClusterMoment,
    DaemonSeries,
    JobWatchdog,
    OpenJob,
    StatusHonesty,
    StatusObservation,
)
from tests.soak.faults import Downtime, FaultDriver
from tests.soak.pacing import Bounds

NOT_ENDED = (
    types_pb2.JOB_STATE_PENDING,
    types_pb2.JOB_STATE_SCHEDULED,
    types_pb2.JOB_STATE_STARTING,
    types_pb2.JOB_STATE_RUNNING,
)
RECOVERY_EVENTS = ("leader.run_overdue", "leader.run_redriven", "leader.cancel_unstarted")
STATUS_TIMEOUT_SECONDS = 2.0
FRESH_SECONDS = 3.0
"""A status answer older than this no longer says who leads."""


def state_name(state: types_pb2.JobState.ValueType) -> str:
    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def _seconds(stamp: object) -> float | None:
    seconds = getattr(stamp, "seconds", 0)
    return seconds + getattr(stamp, "nanos", 0) / 1e9 if seconds else None


class LogWatch:
    """The nodes' logs, read incrementally (a restarted node appends to its log)."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self._paths = paths
        self._offsets = dict.fromkeys(paths, 0)
        self._partial = dict.fromkeys(paths, b"")
        self.terms_led: dict[str, set[int]] = {name: set() for name in paths}
        self.task_counts: list[tuple[str, int, float, int]] = []
        """(node, pid, time, tasks), drained by the resource sampler."""
        self.recoveries: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def led_up_to(self, name: str) -> int:
        self.read(name)
        return max(self.terms_led[name], default=0)

    def read_all(self) -> None:
        for name in self._paths:
            self.read(name)

    def read(self, name: str) -> None:
        try:
            with self._paths[name].open("rb") as handle:
                handle.seek(self._offsets[name])
                data = self._partial[name] + handle.read()
                self._offsets[name] = handle.tell()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        self._partial[name] = lines.pop()
        for line in lines:
            self._parse(name, line)

    def _parse(self, name: str, line: bytes) -> None:
        if b'"level": "error"' in line:
            record = _record(line)
            if record is not None:
                event = str(record.get("event", record.get("message", "")))[:80]
                self.errors[event] += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append(f"{name}: {line[:400].decode(errors='replace')}")
        if b'"consensus.state"' in line:
            record = _record(line)
            if record is not None and record.get("role") == "leader":
                self.terms_led[name].add(int(str(record.get("term", 0))))
        elif b'"daemon.stats"' in line:
            record = _record(line)
            if record is not None:
                at = datetime.fromisoformat(str(record["time"])).timestamp()
                self.task_counts.append(
                    (name, int(str(record["pid"])), at, int(str(record["tasks"])))
                )
        elif b'"leader.run_' in line or b'"leader.cancel_unstarted"' in line:
            record = _record(line)
            if record is not None and record.get("event") in RECOVERY_EVENTS:
                self.recoveries[str(record["event"])] += 1


def _record(line: bytes) -> dict[str, object] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class StatusPoller:
    """GetStatus on each node the soak can reach, every ``interval`` seconds."""

    def __init__(
        self,
        cluster: ChaosCluster,
        *,
        faults: FaultDriver,
        downtime: Downtime,
        honesty: StatusHonesty,
        interval: float,
    ) -> None:
        self._cluster = cluster
        self._faults = faults
        self._downtime = downtime
        self._honesty = honesty
        self._interval = interval
        self._last: dict[str, StatusObservation] = {}
        self.current: tuple[str, int] | None = None
        self.current_since = time.time()
        self.unanswered = 0
        self.leaderless_seconds = 0.0
        """Time in which no reachable node named a reachable leader."""
        self.longest_leaderless = 0.0
        self._leaderless_since: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for name in self._cluster.names:
                group.create_task(self._poll(name, stop))
            group.create_task(self._time_leaderless(stop))

    def leader(self) -> tuple[str, int] | None:
        """(leader, term) of the highest term a fresh answer of a reachable node names a
        reachable leader in."""
        now = time.time()
        unavailable = self._faults.unavailable()
        fresh = [
            seen
            for name, seen in self._last.items()
            if seen.leader
            and now - seen.received_at < FRESH_SECONDS
            and name not in unavailable
            and seen.leader not in unavailable
        ]
        if not fresh:
            return None
        best = max(fresh, key=lambda seen: seen.term)
        return best.leader, best.term

    def leader_client(self) -> murmur.AsyncClient | None:
        current = self.leader()
        return None if current is None else self._cluster.client(current[0])

    async def _time_leaderless(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self._interval)
            now = time.time()
            if self.leader() is None:
                if self._leaderless_since is None:
                    self._leaderless_since = now
                else:
                    self.leaderless_seconds += self._interval
                    self.longest_leaderless = max(
                        self.longest_leaderless, now - self._leaderless_since
                    )
            else:
                self._leaderless_since = None

    async def _poll(self, name: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            if name not in self._faults.unavailable():
                await self._ask(name)
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - began)))

    async def _ask(self, name: str) -> None:
        sent = time.time()
        try:
            status = await self._cluster.client(name).status(timeout=STATUS_TIMEOUT_SECONDS)
        except murmur.MurmurError:
            self.unanswered += 1
            return
        seen = StatusObservation(
            answered_by=name,
            leader=status.leader,
            term=status.term,
            sent_at=sent,
            received_at=time.time(),
        )
        self._last[name] = seen
        down = None
        if seen.leader:
            down = self._downtime.covering(seen.leader, seen.sent_at, seen.received_at)
        self._honesty.observe(seen, down)
        current = self.leader()
        if current is not None and current != self.current:
            self.current, self.current_since = current, seen.received_at


class JobPoller:
    """The leader's jobs not ended, into the watchdog, every ``interval`` seconds."""

    def __init__(
        self,
        *,
        status: StatusPoller,
        watchdog: JobWatchdog,
        faults: FaultDriver,
        downtime: Downtime,
        gpus_per_node: int,
        names: list[str],
        bounds: Bounds,
        cancelled_at: Callable[[], dict[str, float]],
        interval: float = 2.0,
    ) -> None:
        self._status = status
        self._watchdog = watchdog
        self._faults = faults
        self._downtime = downtime
        self._gpus = gpus_per_node
        self._names = names
        self._bounds = bounds
        self._cancelled_at = cancelled_at
        self._interval = interval
        self.stuck_lines: list[str] = []
        self.failed_listings = 0

    async def run(self, stop: asyncio.Event, say: Callable[[str], None]) -> None:
        while not stop.is_set():
            began = time.monotonic()
            for line in self._watchdog.sample(await self.moment()):
                self.stuck_lines.append(line)
                say(f"  STUCK {line}")
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - began)))

    async def moment(self) -> ClusterMoment:
        jobs: list[OpenJob] | None = None
        client = self._status.leader_client()
        leader_since = self._status.current_since
        if client is not None:
            try:
                listed = await client.list_jobs(states=NOT_ENDED, timeout=10)
                jobs = [open_job(job) for job in listed]
            except murmur.MurmurError:
                self.failed_listings += 1
        now = time.time()
        quiet = {name: self._downtime.quiet_since(name, now) for name in self._names}
        unavailable = self._faults.unavailable()
        healthy = {
            name: self._gpus
            for name in self._names
            if name not in unavailable and now - quiet[name] >= self._bounds.healthy_after_seconds
        }
        return ClusterMoment(
            now=now,
            jobs=jobs,
            leader_since=leader_since,
            quiet_since=quiet,
            healthy=healthy,
            cancelled_at=self._cancelled_at(),
        )


def open_job(job: types_pb2.Job) -> OpenJob:
    run = max(job.runs, key=lambda r: r.attempt) if job.runs else None
    return OpenJob(
        id=job.id,
        name=job.spec.name,
        state=state_name(job.state),
        reason=job.reason,
        queue_position=job.queue_position,
        submitted_at=_seconds(job.submitted_at) or 0.0,
        run_id=run.id if run else "",
        run_node=run.node if run else "",
        run_started_at=_seconds(run.started_at) if run else None,
    )


class ResourceSampler:
    """Each live daemon's RSS, open files and threads, every ``interval`` seconds."""

    def __init__(
        self, cluster: ChaosCluster, *, faults: FaultDriver, logs: LogWatch, interval: float
    ) -> None:
        self._cluster = cluster
        self._faults = faults
        self._logs = logs
        self._interval = interval
        self.daemons: dict[tuple[str, int], DaemonSeries] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            await asyncio.sleep(self._interval)

    def sample(self) -> None:
        now = time.time()
        for name in self._cluster.names:
            node = self._cluster.nodes.get(name)
            if node is None or node.process.poll() is not None:
                continue
            pid = node.process.pid
            found = read_proc(pid)
            if found is None:
                continue
            series = self._series(name, pid)
            for metric, value in found.items():
                series.add(metric, now, value)
        self._logs.read_all()
        for name, pid, at, tasks in self._logs.task_counts:
            self._series(name, pid).add("tasks", at, tasks)
        self._logs.task_counts.clear()

    def _series(self, name: str, pid: int) -> DaemonSeries:
        if (name, pid) not in self.daemons:
            self.daemons[(name, pid)] = DaemonSeries(node=name, pid=pid)
        return self.daemons[(name, pid)]


def read_proc(pid: int) -> dict[str, float] | None:
    """RSS (MiB), open file descriptors and threads of ``pid``; None once it is gone."""
    found: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    found["rss_mib"] = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    found["threads"] = int(line.split()[1])
        found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return found if len(found) == 3 else None


TCP_STATES = {"01": "established", "06": "time-wait", "08": "close-wait", "0A": "listen"}


def fd_breakdown(pid: int) -> dict[str, int]:
    """What ``pid``'s open descriptors are, counted by kind: TCP connections by
    direction and peer (read in the process's own network namespace), listening
    sockets, pipes, files by name."""
    rows: list[tuple[str, str, str, str]] = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                rows.append((fields[1], fields[2], fields[3], fields[9]))
    listening = {_endpoint(local)[1] for local, _, state, _ in rows if state == "0A"}
    sockets: dict[str, str] = {}
    for local, remote, state, inode in rows:
        if state == "0A":
            sockets[inode] = "tcp listen"
            continue
        what = TCP_STATES.get(state, state)
        host, port = _endpoint(remote)
        if _endpoint(local)[1] in listening:
            sockets[inode] = f"tcp {what} in from {host}"
        else:
            sockets[inode] = f"tcp {what} out to {host}:{port}"
    kinds: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                kinds[sockets.get(target[8:-1], "socket (not tcp)")] += 1
            elif target.startswith(("pipe:", "anon_inode:")):
                kinds[target.split("[")[0].rstrip(":")] += 1
            else:
                kinds[Path(target).name] += 1
    return dict(kinds.most_common(20))


def _endpoint(text: str) -> tuple[str, int]:
    """A ``/proc/net/tcp*`` address: host (IPv4, also when mapped into IPv6) and port."""
    host, port = text.split(":")
    if len(host) == 32 and host.startswith("0000000000000000FFFF0000"):
        host = host[24:]
    if len(host) == 8:
        return ".".join(str(int(host[i : i + 2], 16)) for i in range(6, -1, -2)), int(port, 16)
    return "ipv6", int(port, 16)


class ExecutionWatch:
    """The jobs' execution files (re-read when they grow) and the live job processes:
    runs of one job overlapping in time, or one GPU given to two runs, as they happen.

    A run without an ``end`` line counts as running while its process (pid and start
    time) is alive, else until its ``exit.json`` (written once its supervisor reaped
    it) or, without one yet, its last beat plus slack: as the final check holds it,
    so what is found here is found there too, and a GPU handed on a few milliseconds
    after its holder was killed is no double booking here either.
    """

    def __init__(self, results_dir: Path, *, marker: str, lab_root: Path) -> None:
        self._results_dir = results_dir
        self._marker = marker
        self._lab_root = lab_root
        self._sizes: dict[Path, int] = {}
        self._by_file: dict[Path, list[Execution]] = {}
        self._boot = boot_wall_time()
        self._ticks = os.sysconf("SC_CLK_TCK")
        self.found: dict[str, Overlap] = {}
        self.checks = 0
        self._exits: dict[str, float] = {}

    def check(self) -> list[Overlap]:
        """Reads what changed, looks for overlaps; returns the ones not seen before."""
        for path in self._results_dir.glob("*.log"):
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                if self._sizes.get(path) != size:
                    self._sizes[path] = size
                    executions, _ = parse_execution_lines(
                        path.read_text(errors="replace").splitlines()
                    )
                    for execution in executions:
                        execution.forked_at = self._boot + execution.pid_start / self._ticks
                    self._by_file[path] = executions
        alive = {
            (p.pid, p.start_time)
            for p in harness_processes(self._marker, self._lab_root)
            if p.kind == "job"
        }
        executions = [e for found in self._by_file.values() for e in found]
        self.checks += 1
        exits = self._exits_of(e for e in executions if e.ended_at is None)
        new: list[Overlap] = []
        for overlap in [
            *concurrent_runs(executions, exits, alive),
            *gpu_conflicts(executions, exits, alive),
        ]:
            key = f"{overlap.job_id} {overlap.first.run_id}/{overlap.first.pid} " + (
                f"{overlap.second.run_id}/{overlap.second.pid}"
            )
            if key not in self.found:
                self.found[key] = overlap
                new.append(overlap)
        return new

    def _exits_of(self, unended: Iterable[Execution]) -> dict[str, float]:
        """``finished_at`` of each such run's ``exit.json``, read once it exists."""
        for execution in unended:
            if execution.run_id in self._exits:
                continue
            path = self._lab_root / execution.node / "runs" / execution.run_id / "exit.json"
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self._exits[execution.run_id] = float(json.loads(path.read_bytes())["finished_at"])
        return self._exits

    def executions(self) -> int:
        return sum(len(found) for found in self._by_file.values())
