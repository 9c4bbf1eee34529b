"""The soak's verdicts. Pure: they are fed samples and say what the rules forbid.

- :class:`StatusHonesty`: one leader name per term, over every GetStatus answer and
  the nodes' own logs; and never a node the soak holds down (killed or stopped)
  named leader of a term later than the last one it led before it went down
  (which its log tells: a node logs its leadership before it sends a message as
  leader).
- :class:`JobWatchdog`: no job stays unended past its bound (see
  :class:`tests.soak.pacing.Bounds`): a run scheduled or starting too long, a run
  running too long after its program's planned end, a cancel not ended, a pending
  job the healthy nodes had room for (and for every job ahead of it) too long.
- :func:`resource_verdicts`: a daemon's RSS, open files, threads and asyncio tasks
  stay flat after the warm-up (first fifth against last fifth, medians).

Runs twice at once are judged by :mod:`tests.chaos.checker`, on the executions the
jobs record themselves.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.soak.faults import DownWindow
from tests.soak.pacing import Bounds
from tests.soak.workload import JobPlan

# -- status -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusObservation:
    answered_by: str
    leader: str
    term: int
    sent_at: float
    received_at: float


@dataclass
class StatusHonesty:
    observations: int = 0
    leader_of_term: dict[int, tuple[str, StatusObservation]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    _reported: set[tuple[str, int, str]] = field(default_factory=set)

    def observe(self, seen: StatusObservation, leader_down: DownWindow | None) -> None:
        """One GetStatus answer; ``leader_down``: the window in which the named leader
        was killed or stopped for the whole call, if any."""
        self.observations += 1
        if not seen.leader:
            return
        known = self.leader_of_term.get(seen.term)
        if known is None:
            self.leader_of_term[seen.term] = (seen.leader, seen)
        elif known[0] != seen.leader:
            self._report(
                ("two-leaders", seen.term, seen.leader),
                f"term {seen.term} has two leader names: {known[1].answered_by} named "
                f"{known[0]} at {known[1].received_at:.3f}, {seen.answered_by} named "
                f"{seen.leader} at {seen.received_at:.3f}",
            )
        if leader_down is not None and seen.term > leader_down.led_up_to:
            self._report(
                ("dead-leader", seen.term, seen.leader),
                f"{seen.answered_by} named {seen.leader} leader of term {seen.term} "
                f"(asked at {seen.sent_at:.3f}) while {seen.leader} was {leader_down.why} "
                f"since {leader_down.since:.3f}, having led up to term {leader_down.led_up_to}",
            )

    def logged_leaders(self, terms_led: Mapping[str, set[int]]) -> None:
        """The nodes' own logs: no two nodes lead one term."""
        by_term: dict[int, set[str]] = {}
        for node, terms in terms_led.items():
            for term in terms:
                by_term.setdefault(term, set()).add(node)
        for term, nodes in sorted(by_term.items()):
            if len(nodes) > 1:
                self._report(
                    ("logged", term, ",".join(sorted(nodes))),
                    f"term {term} led by {', '.join(sorted(nodes))} (from their logs)",
                )

    def _report(self, key: tuple[str, int, str], line: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.violations.append(line)


# -- jobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenJob:
    """A job not ended, as the leader lists it (lowercase states, Unix times)."""

    id: str
    name: str
    state: str
    reason: str = ""
    queue_position: int = 0
    submitted_at: float = 0.0
    run_id: str = ""
    run_node: str = ""
    run_started_at: float | None = None


@dataclass(frozen=True)
class ClusterMoment:
    now: float
    jobs: Sequence[OpenJob] | None
    """Every job not ended; None when no leader answered this time."""
    leader_since: float
    """When the current leader and term were first seen."""
    quiet_since: Mapping[str, float]
    """Node -> the end of its last down time (``now`` while it is down)."""
    healthy: Mapping[str, int]
    """Nodes able to take work now (up, reachable, repaired a while ago) -> GPUs."""
    cancelled_at: Mapping[str, float]
    """Job id -> when a cancel of it was acknowledged."""


ACTIVE = ("scheduled", "starting", "running")


class JobWatchdog:
    """Feeds on one :class:`ClusterMoment` after another; each job stuck past a bound
    is reported once per rule, with what was seen."""

    def __init__(self, bounds: Bounds, plans: Mapping[str, JobPlan]) -> None:
        self._bounds = bounds
        self._plans = plans
        self._unstarted_since: dict[tuple[str, str], float] = {}
        self._running_since: dict[tuple[str, str], float] = {}
        self._placeable_since: dict[str, float] = {}
        self.stuck: dict[tuple[str, str], str] = {}
        self.samples = 0
        self.open_jobs = 0

    def sample(self, moment: ClusterMoment) -> list[str]:
        if moment.jobs is None:
            self._placeable_since.clear()
            return []
        self.samples += 1
        self.open_jobs = len(moment.jobs)
        now = moment.now
        found: list[str] = []
        listed = {job.id for job in moment.jobs}
        placeable = self._placeable(moment)
        for job in moment.jobs:
            node_quiet = moment.quiet_since.get(job.run_node, 0.0) if job.run_node else 0.0
            calm = max(moment.leader_since, node_quiet)
            if job.state in ("scheduled", "starting"):
                since = self._unstarted_since.setdefault((job.id, job.run_id), now)
                if now - max(since, calm) > self._bounds.start_seconds:
                    found += self._stuck(job, "unstarted", now - since, moment)
            if job.state == "running":
                seen = self._running_since.setdefault((job.id, job.run_id), now)
                started = seen if job.run_started_at is None else job.run_started_at
                plan = self._plans.get(job.name)
                planned_end = started + (plan.seconds if plan else 0.0)
                if now - max(planned_end, calm) > self._bounds.running_slack_seconds:
                    found += self._stuck(job, "overdue", now - started, moment)
            cancelled = moment.cancelled_at.get(job.id)
            if cancelled is not None and now - max(cancelled, calm) > self._bounds.cancel_seconds:
                found += self._stuck(job, "cancel-not-ended", now - cancelled, moment)
            if job.state == "pending" and job.id in placeable:
                since = self._placeable_since.setdefault(job.id, now)
                if now - max(since, moment.leader_since) > self._bounds.pending_seconds:
                    found += self._stuck(job, "pending-with-room", now - since, moment)
            else:
                self._placeable_since.pop(job.id, None)
        for table in (self._unstarted_since, self._running_since):
            for key in [key for key in table if key[0] not in listed]:
                del table[key]
        for job_id in [j for j in self._placeable_since if j not in listed]:
            del self._placeable_since[job_id]
        return found

    def _gpus(self, job: OpenJob) -> int:
        plan = self._plans.get(job.name)
        return plan.gpus if plan else 0

    def _nodes(self, job: OpenJob) -> int:
        plan = self._plans.get(job.name)
        return plan.nodes if plan else 1

    def _placeable(self, moment: ClusterMoment) -> set[str]:
        """Pending jobs the healthy nodes had room for, with every job ahead of them
        (queue order, placed greedily on the node with the most free GPUs)."""
        assert moment.jobs is not None
        if not moment.healthy:
            return set()
        free = dict(moment.healthy)
        for job in moment.jobs:
            if job.state in ACTIVE and job.run_node in free:
                free[job.run_node] -= self._gpus(job)
        pending = sorted(
            (job for job in moment.jobs if job.state == "pending"),
            key=lambda job: (job.queue_position or 1 << 30, job.submitted_at),
        )
        found: set[str] = set()
        for job in pending:
            need = self._gpus(job)
            node = max(free, key=lambda name: free[name])
            if free[node] < need or len(free) < self._nodes(job):
                break  # it waits, and so does every job behind it
            free[node] -= need
            found.add(job.id)
        return found

    def _stuck(self, job: OpenJob, rule: str, seconds: float, moment: ClusterMoment) -> list[str]:
        if (job.id, rule) in self.stuck:
            return []
        where = f" run {job.run_id} on {job.run_node}" if job.run_id else ""
        line = (
            f"{rule}: job {job.id} ({job.name}) {job.state}{where} for {seconds:.0f} s "
            f"({job.reason or 'no reason given'}); healthy nodes "
            f"{','.join(sorted(moment.healthy)) or 'none'}"
        )
        self.stuck[(job.id, rule)] = line
        return [line]


# -- daemon resources ---------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    start: float
    """Median of the first fifth of the samples."""
    end: float
    """Median of the last fifth."""
    slope_per_hour: float
    """Least-squares slope over every sample."""
    samples: int

    @property
    def delta(self) -> float:
        return self.end - self.start


def growth(points: Sequence[tuple[float, float]]) -> Growth | None:
    """``points``: (time, value), in time order; None with fewer than 4."""
    if len(points) < 4:
        return None
    fifth = max(1, len(points) // 5)
    start = statistics.median(v for _, v in points[:fifth])
    end = statistics.median(v for _, v in points[-fifth:])
    times = [t for t, _ in points]
    values = [v for _, v in points]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0
    return Growth(start=start, end=end, slope_per_hour=slope * 3600, samples=len(points))


METRICS = ("rss_mib", "fds", "threads", "tasks")


@dataclass
class DaemonSeries:
    """One daemon process's samples (a restart makes a new one)."""

    node: str
    pid: int
    points: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {metric: [] for metric in METRICS}
    )

    def add(self, metric: str, at: float, value: float) -> None:
        self.points[metric].append((at, value))

    def span(self) -> tuple[float, float] | None:
        times = [t for series in self.points.values() for t, _ in series]
        return (min(times), max(times)) if times else None


def resource_verdicts(
    daemons: Sequence[DaemonSeries],
    *,
    warmup_ends: float,
    min_span: float,
    bounds: Bounds,
) -> tuple[list[dict[str, Any]], list[str]]:
    """A summary per daemon process, and the violations: a process whose samples after
    ``warmup_ends`` span at least ``min_span`` seconds is judged against the bounds."""
    limits = {
        "rss_mib": bounds.rss_growth_mib,
        "fds": bounds.fd_growth,
        "threads": bounds.thread_growth,
        "tasks": bounds.task_growth,
    }
    summaries: list[dict[str, Any]] = []
    violations: list[str] = []
    for daemon in daemons:
        span = daemon.span()
        if span is None:
            continue
        summary: dict[str, Any] = {
            "node": daemon.node,
            "pid": daemon.pid,
            "first_sample": round(span[0], 1),
            "last_sample": round(span[1], 1),
        }
        judged_span = 0.0
        for metric, limit in limits.items():
            all_points = daemon.points[metric]
            settled = [(t, v) for t, v in all_points if t >= warmup_ends]
            found = growth(settled)
            summary[metric] = {
                "first": all_points[0][1] if all_points else None,
                "last": all_points[-1][1] if all_points else None,
            }
            if found is None:
                continue
            judged_span = max(judged_span, settled[-1][0] - settled[0][0])
            summary[metric].update(
                start=round(found.start, 1),
                end=round(found.end, 1),
                slope_per_hour=round(found.slope_per_hour, 1),
                samples=found.samples,
                bound=limit,
            )
            if settled[-1][0] - settled[0][0] >= min_span and found.delta > limit:
                violations.append(
                    f"{daemon.node} (pid {daemon.pid}) {metric} grew {found.start:.1f} -> "
                    f"{found.end:.1f} after the warm-up (bound +{limit:g}; "
                    f"{found.slope_per_hour:+.1f}/h over {found.samples} samples)"
                )
        summary["judged"] = judged_span >= min_span
        summaries.append(summary)
    return summaries, violations
