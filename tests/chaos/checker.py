"""The checker: verdicts over a chaos session's history. Pure functions, no I/O.

Violations (each must be 0):

- **lost**: an acknowledged submission whose job id is missing from the cluster's
  final job list.
- **duplicate jobs**: one idempotency key (one job name: the submitter gives each
  key a name of its own) that made more than one job.
- **concurrent runs**: two executions of the same job whose wall-time intervals
  overlap. An execution's interval starts at the earlier of its process's fork
  (its start time in ``/proc``) and its ``start`` line, and ends:

  1. at its ``end`` line when it wrote one;
  2. else, when its process (pid *and* start time) was still alive at the end,
     never (it overlaps everything after its start; it is also an orphan);
  3. else at its run's ``exit.json`` ``finished_at`` (written by its supervisor
     after the process exited, or by the daemon after killing what was left: a
     time when it was surely dead), when that is no earlier than its last beat;
  4. else at ``last_seen + BEAT_SLACK_SECONDS`` (it beat every 0.25 s while
     alive, so it died before its next beat was due, give or take scheduling).
  A killed run is held running as long as the evidence allows, and no longer:
  the slack stands in for a proof of death only where there is none (the soak
  found a run that started 0.25 s after its GPU's previous holder was reaped
  flagged as overlapping it, by the slack alone).
  Intervals touching at one instant do not overlap.
- **GPU conflicts**: two executions on one node, overlapping as above, given a
  common GPU index (``CUDA_VISIBLE_DEVICES``); chaos jobs never ask to share.
- **orphans**: a job process alive once the cluster settled although its job had
  ended (or is unknown to the cluster), or any harness process (job, supervisor,
  fork server, daemon) alive after the lab was torn down and runs had their
  lease and grace to stop.

Anomalies (reported, not counted as violations): a job the cluster calls
succeeded with no execution that ended ``ok``, executions of job ids the cluster
does not know, unreadable execution lines, jobs that never reached an end state.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.chaos.history import Execution, Submission

BEAT_SLACK_SECONDS = 1.0
"""How long after its last beat a process without an ``end`` line may still have run."""

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "lost"})


@dataclass(frozen=True)
class FinalRun:
    run_id: str
    node: str
    state: str


@dataclass(frozen=True)
class FinalJob:
    """A job as the cluster lists it at the end (lowercase state names)."""

    id: str
    name: str
    state: str
    runs: tuple[FinalRun, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class LiveProcess:
    """A process of the harness found alive in ``/proc``."""

    pid: int
    start_time: int
    kind: str
    """job (runs job_program) | lab (daemon, fork server, supervisor)."""
    job_id: str = ""
    cmdline: str = ""


@dataclass(frozen=True)
class Overlap:
    job_id: str
    first: Execution
    second: Execution
    first_end: float
    second_end: float
    evidence: str
    """How each end was found: ``end-line``, ``alive``, ``exit.json`` or ``last-beat``."""

    def describe(self) -> str:
        def one(execution: Execution, end: float) -> str:
            return (
                f"run {execution.run_id} on {execution.node} pid {execution.pid} "
                f"[{execution.began:.3f}, {end:.3f}]"
            )

        return (
            f"job {self.job_id}: {one(self.first, self.first_end)} overlaps "
            f"{one(self.second, self.second_end)} ({self.evidence})"
        )


@dataclass
class CheckReport:
    submitted: int = 0
    acknowledged: int = 0
    unknown: int = 0
    """Never acknowledged (every attempt failed or timed out)."""
    unknown_found: int = 0
    """Of those, how many the cluster holds after all (found by name)."""
    succeeded: int = 0
    failed: int = 0
    lost_state: int = 0
    """Jobs whose final state is LOST (a run lost with no retry left): allowed."""
    cancelled: int = 0
    unfinished: int = 0
    rerun: int = 0
    """Jobs with more than one run (in the cluster's record or in the executions)."""
    executions: int = 0
    executions_without_end: int = 0
    lost_acknowledged: list[str] = field(default_factory=list)
    duplicate_jobs: dict[str, list[str]] = field(default_factory=dict)
    overlaps: list[Overlap] = field(default_factory=list)
    gpu_conflicts: list[Overlap] = field(default_factory=list)
    orphans: list[LiveProcess] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        lines = [f"lost acknowledged job {job_id}" for job_id in self.lost_acknowledged]
        lines += [
            f"one idempotency key made {len(ids)} jobs: {name} -> {', '.join(ids)}"
            for name, ids in self.duplicate_jobs.items()
        ]
        lines += [f"ran twice at once: {overlap.describe()}" for overlap in self.overlaps]
        lines += [f"GPU given twice: {conflict.describe()}" for conflict in self.gpu_conflicts]
        lines += [
            f"orphan {orphan.kind} process pid {orphan.pid} job {orphan.job_id or '-'}: "
            f"{orphan.cmdline[:200]}"
            for orphan in self.orphans
        ]
        return lines

    def counts(self) -> dict[str, int]:
        return {
            "submitted": self.submitted,
            "acknowledged": self.acknowledged,
            "unknown": self.unknown,
            "unknown_found": self.unknown_found,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "lost_state": self.lost_state,
            "cancelled": self.cancelled,
            "unfinished": self.unfinished,
            "rerun": self.rerun,
            "executions": self.executions,
            "executions_without_end": self.executions_without_end,
            "lost_acknowledged": len(self.lost_acknowledged),
            "duplicate_jobs": len(self.duplicate_jobs),
            "concurrent_runs": len(self.overlaps),
            "gpu_conflicts": len(self.gpu_conflicts),
            "orphans": len(self.orphans),
        }


def check(
    *,
    submissions: Sequence[Submission],
    final_jobs: Sequence[FinalJob],
    executions: Sequence[Execution],
    run_exits: Mapping[str, float],
    live_at_settle: Sequence[LiveProcess],
    live_after_teardown: Sequence[LiveProcess],
    unreadable_lines: Sequence[str] = (),
) -> CheckReport:
    """Every verdict over one session; see the module docstring for the rules."""
    report = CheckReport(submitted=len(submissions), executions=len(executions))
    jobs_by_id = {job.id: job for job in final_jobs}
    names = Counter(job.name for job in final_jobs)

    report.acknowledged = sum(1 for s in submissions if s.acknowledged)
    report.lost_acknowledged = lost_acknowledged(submissions, jobs_by_id)
    report.duplicate_jobs = duplicate_jobs(submissions, final_jobs)
    unknown = [s for s in submissions if not s.acknowledged]
    report.unknown = len(unknown)
    report.unknown_found = sum(1 for s in unknown if names[s.name] > 0)

    states = Counter(job.state for job in final_jobs)
    report.succeeded = states["succeeded"]
    report.failed = states["failed"]
    report.lost_state = states["lost"]
    report.cancelled = states["cancelled"]
    report.unfinished = sum(1 for job in final_jobs if job.state not in TERMINAL_STATES)

    alive = {(p.pid, p.start_time) for p in [*live_at_settle, *live_after_teardown]}
    report.overlaps = concurrent_runs(executions, run_exits, alive)
    report.gpu_conflicts = gpu_conflicts(executions, run_exits, alive)
    report.orphans = orphans(live_at_settle, live_after_teardown, jobs_by_id)
    report.executions_without_end = sum(1 for e in executions if e.ended_at is None)

    by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_job[execution.job_id].append(execution)
    report.rerun = sum(
        1 for job in final_jobs if len(job.runs) > 1 or len(by_job.get(job.id, ())) > 1
    )
    report.anomalies = anomalies(final_jobs, by_job, unreadable_lines)
    return report


def lost_acknowledged(
    submissions: Iterable[Submission], jobs_by_id: Mapping[str, FinalJob]
) -> list[str]:
    return [s.job_id for s in submissions if s.acknowledged and s.job_id not in jobs_by_id]


def duplicate_jobs(
    submissions: Iterable[Submission], final_jobs: Iterable[FinalJob]
) -> dict[str, list[str]]:
    """Names of our submissions held by more than one job, with those jobs' ids."""
    ours = {s.name for s in submissions}
    ids: dict[str, list[str]] = defaultdict(list)
    for job in final_jobs:
        if job.name in ours:
            ids[job.name].append(job.id)
    return {name: sorted(found) for name, found in ids.items() if len(found) > 1}


def execution_end(
    execution: Execution, run_exits: Mapping[str, float], alive: set[tuple[int, int]]
) -> tuple[float, str]:
    """When the execution surely stopped running, and what says so (rules 1-4)."""
    if execution.ended_at is not None:
        return execution.ended_at, "end-line"
    if (execution.pid, execution.pid_start) in alive:
        return math.inf, "alive"
    by_exit = run_exits.get(execution.run_id)
    if by_exit is not None and by_exit >= execution.last_seen:
        return by_exit, "exit.json"  # surely dead then, and seen alive no later
    return execution.last_seen + BEAT_SLACK_SECONDS, "last-beat"


def _overlapping_pairs(
    executions: Sequence[Execution],
    run_exits: Mapping[str, float],
    alive: set[tuple[int, int]],
    job_id: str,
) -> list[Overlap]:
    ends = [execution_end(e, run_exits, alive) for e in executions]
    order = sorted(range(len(executions)), key=lambda i: executions[i].began)
    found: list[Overlap] = []
    for position, i in enumerate(order):
        for j in order[position + 1 :]:
            first, second = executions[i], executions[j]
            if second.began >= ends[i][0]:
                continue  # sorted by start: later ones may still overlap i (a long run)
            if first.began < ends[j][0]:
                found.append(
                    Overlap(
                        job_id=job_id,
                        first=first,
                        second=second,
                        first_end=ends[i][0],
                        second_end=ends[j][0],
                        evidence=f"{ends[i][1]}/{ends[j][1]}",
                    )
                )
    return found


def concurrent_runs(
    executions: Sequence[Execution],
    run_exits: Mapping[str, float],
    alive: set[tuple[int, int]],
) -> list[Overlap]:
    """Pairs of executions of one job whose intervals overlap."""
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_job[execution.job_id].append(execution)
    found: list[Overlap] = []
    for job_id, runs in sorted(by_job.items()):
        found += _overlapping_pairs(runs, run_exits, alive, job_id)
    return found


def gpu_conflicts(
    executions: Sequence[Execution],
    run_exits: Mapping[str, float],
    alive: set[tuple[int, int]],
) -> list[Overlap]:
    """Pairs of executions on one node holding a common GPU index at the same time."""
    by_gpu: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for execution in executions:
        for gpu in execution.gpus:
            by_gpu[(execution.node, gpu)].append(execution)
    found: list[Overlap] = []
    for (node, gpu), holders in sorted(by_gpu.items()):
        found += _overlapping_pairs(holders, run_exits, alive, f"{node} GPU {gpu}")
    return found


def orphans(
    live_at_settle: Iterable[LiveProcess],
    live_after_teardown: Iterable[LiveProcess],
    jobs_by_id: Mapping[str, FinalJob],
) -> list[LiveProcess]:
    """Job processes alive at the settle whose job had ended (or is unknown), and
    every harness process alive after the teardown."""
    found: dict[tuple[int, int], LiveProcess] = {}
    for process in live_at_settle:
        if process.kind != "job":
            continue
        job = jobs_by_id.get(process.job_id)
        if job is None or job.state in TERMINAL_STATES:
            found[(process.pid, process.start_time)] = process
    for process in live_after_teardown:
        found[(process.pid, process.start_time)] = process
    return sorted(found.values(), key=lambda p: p.pid)


def anomalies(
    final_jobs: Iterable[FinalJob],
    executions_by_job: Mapping[str, Sequence[Execution]],
    unreadable_lines: Sequence[str],
) -> list[str]:
    found: list[str] = []
    known: set[str] = set()
    for job in final_jobs:
        known.add(job.id)
        ran = executions_by_job.get(job.id, ())
        if job.state == "succeeded" and not any(e.how == "ok" for e in ran):
            found.append(f"job {job.id} succeeded without an execution that ended ok")
        if job.state not in TERMINAL_STATES:
            found.append(f"job {job.id} never ended: {job.state} ({job.reason})")
    for job_id in sorted(set(executions_by_job) - known):
        found.append(f"executions of job {job_id}, which the cluster does not list")
    found += [f"unreadable execution line: {line}" for line in unreadable_lines]
    return found
