"""One soak: a fresh cluster, load, faults and monitors for a set time, then settling,
the final check and the report.

1. start N nodes (the last is the witness, never killed), wait for N voters;
2. for the load period: bursts from client processes, cancels, faults; meanwhile
   GetStatus is polled on every reachable node, the leader's open jobs are checked
   against their bounds, the jobs' execution files against each other, and each
   daemon's resources sampled; a progress line every interval;
3. stop the load, repair every fault, wait for a leader, then until every job has
   ended (or the settle bound);
4. look for job processes left, list every job (archived ones too), tear the lab
   down, give runs their lease and grace, look again, read the executions and the
   runs' exit records: :func:`tests.chaos.checker.check` (lost, duplicated, run
   twice at once, GPU given twice, orphans) plus the soak's own verdicts.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing.pool
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import murmur
from tests.chaos.checker import CheckReport, FinalJob, LiveProcess, check
from tests.chaos.cluster import ChaosCluster
from tests.chaos.harness import STOP_GRACE_SECONDS, final_job
from tests.chaos.history import boot_wall_time, read_executions, read_run_exits, to_json
from tests.chaos.network import SplittableHosts
from tests.chaos.processes import harness_processes
from tests.soak.checks import (
    DaemonSeries,
    JobWatchdog,
    StatusHonesty,
    resource_verdicts,
)
from tests.soak.faults import Downtime, FaultDriver, fault_kinds, fault_plans
from tests.soak.monitors import (
    ExecutionWatch,
    JobPoller,
    LogWatch,
    ResourceSampler,
    StatusPoller,
    fd_breakdown,
)
from tests.soak.pacing import Bounds, NodeSettings, Pacing
from tests.soak.workload import Bursts, Cancels, pause_unless
from tests.support.bursts import spawn_pool
from tests.support.nodes import create_lab

ENDED = ("succeeded", "failed", "cancelled", "lost")


@dataclass(frozen=True)
class SoakConfig:
    workdir: Path
    minutes: float
    nodes: int = 3
    seed: int = 1
    clients: int = 4
    """Client processes submitting each burst."""
    gpus_per_node: int = 2
    """Simulated A100s per node."""
    status_interval: float = 0.25
    """Seconds between GetStatus calls to each node."""
    netns_prefix: str | None = None
    """Run on namespaced hosts of this prefix (made by the caller); None: loopback."""
    gangs: bool = False
    """Submit two-node gangs too (see :mod:`tests.soak.workload`)."""


class CouldNotRun(Exception):
    """The soak could not be played (the cluster never came up, a node never restarted)."""


async def run_soak(config: SoakConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Plays one soak; returns its report (``report["violations"]`` empty when clean)."""
    soak = _Soak(config, say)
    return await soak.play()


class _Soak:
    def __init__(self, config: SoakConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.pacing = Pacing.for_load(config.minutes * 60)
        self.settings = NodeSettings()
        self.bounds = Bounds.for_soak(self.pacing, self.settings)
        self.rng = random.Random(config.seed)
        self.session = f"soak{config.seed}"
        self.lab = create_lab(config.workdir / "lab")
        self.results_dir = config.workdir / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.marker = uuid.uuid4().hex
        net = None
        if config.netns_prefix is not None:
            net = SplittableHosts(config.nodes, prefix=config.netns_prefix)
        self.cluster = ChaosCluster(
            self.lab,
            size=config.nodes,
            env=self.settings.env(self.pacing.retention_seconds),
            extra_args=["--simulate-gpus", f"{config.gpus_per_node}xA100-80GB"],
            net=net,
        )
        self.witness = self.cluster.names[-1]
        self.downtime = Downtime()
        self.logs = LogWatch(self.cluster.log_paths())
        self.faults = FaultDriver(
            self.cluster,
            downtime=self.downtime,
            led_up_to=self.logs.led_up_to,
            witness=self.witness,
            bounds=self.bounds,
            say=say,
        )
        self.honesty = StatusHonesty()
        self.status = StatusPoller(
            self.cluster,
            faults=self.faults,
            downtime=self.downtime,
            honesty=self.honesty,
            interval=config.status_interval,
        )
        self.cancels = Cancels(
            leader_client=self.status.leader_client,
            rng=random.Random(self.rng.random()),
            pacing=self.pacing,
        )
        self.bursts = Bursts(
            clients=config.clients,
            identity=self.lab.admin_identity,
            rng=random.Random(self.rng.random()),
            pacing=self.pacing,
            results_dir=self.results_dir,
            marker=self.marker,
            session=self.session,
            gangs=config.gangs,
        )
        self.watchdog = JobWatchdog(self.bounds, self.bursts.plans)
        self.jobs = JobPoller(
            status=self.status,
            watchdog=self.watchdog,
            faults=self.faults,
            downtime=self.downtime,
            gpus_per_node=config.gpus_per_node,
            names=self.cluster.names,
            bounds=self.bounds,
            cancelled_at=self.cancels.acknowledged_at,
        )
        self.resources = ResourceSampler(
            self.cluster, faults=self.faults, logs=self.logs, interval=self.pacing.sample_seconds
        )
        self.executions = ExecutionWatch(
            self.results_dir, marker=self.marker, lab_root=self.lab.root
        )
        self.began = time.time()
        self.load_began = 0.0
        self.notes: list[str] = []
        self.fds_at_rest: dict[str, dict[str, int]] = {}
        self.fds_after_warmup: dict[str, dict[str, int]] = {}

    async def play(self) -> dict[str, Any]:
        config = self.config
        pool = await asyncio.to_thread(spawn_pool, config.clients)
        monitors_stop = asyncio.Event()
        monitors: list[asyncio.Task[None]] = []
        final: list[FinalJob] = []
        live_at_settle: list[LiveProcess] = []
        settled_in: float | None = None
        try:
            await asyncio.to_thread(self.cluster.start)
            agreed = await self._wait_voters(within=90)
            if agreed is None:
                raise CouldNotRun(f"the cluster never agreed on a leader; logs in {self.lab.root}")
            self.say(
                f"soak: cluster up: leader {agreed[0]} term {agreed[1]}, {config.nodes} voters, "
                f"witness {self.witness}"
            )
            monitors = [
                asyncio.create_task(self.status.run(monitors_stop)),
                asyncio.create_task(self.jobs.run(monitors_stop, self.say)),
                asyncio.create_task(self.resources.run(monitors_stop)),
                asyncio.create_task(self._progress(monitors_stop)),
                asyncio.create_task(self._watch_executions(monitors_stop)),
            ]
            await self._load(pool)
            await self.faults.repair_all()
            if await self.cluster.wait_agreed(within=self.bounds.agreement_seconds) is None:
                self.faults.violations.append("no leader agreed after the final repair")
            settle_began = time.monotonic()
            settled = await self._settle()
            settled_in = time.monotonic() - settle_began if settled else None
            self.say(
                f"soak: settled in {settled_in:.0f} s"
                if settled_in is not None
                else f"soak: NOT settled within {self.bounds.settle_seconds:g} s"
            )
            live_at_settle = await self._still_alive()
            self.resources.sample()  # the daemons at rest: the report's "end" figures
            self.fds_at_rest = self._open_files()
            final = await self._final_jobs()
        finally:
            monitors_stop.set()
            for task in monitors:
                task.cancel()
            await asyncio.gather(*monitors, return_exceptions=True)
            await self.cluster.close_clients()
            pool.terminate()
            await asyncio.to_thread(pool.join)
            self.faults.resume_stopped()
            self.cluster.stop_all()
            if self.cluster.net is not None:
                self.cluster.heal()
        live_after = await self._after_teardown()
        return self._report(final, live_at_settle, live_after, settled_in)

    async def _load(self, pool: multiprocessing.pool.Pool) -> None:
        load_stop = asyncio.Event()
        self.load_began = time.time()
        load_ends_at = self.load_began + self.pacing.load_seconds
        addresses = [self.cluster.nodes[name].address for name in self.cluster.names]
        partitions = self.cluster.net is not None
        plans = fault_plans(
            random.Random(self.rng.random()),
            partitions=partitions,
            nodes=self.config.nodes,
            pacing=self.pacing,
        )
        faults = self.faults.run(
            plans,
            load_stop,
            random.Random(self.rng.random()),
            self.pacing.fault_gap_seconds,
            at_least=len(fault_kinds(partitions=partitions)),
        )
        tasks = [
            asyncio.create_task(self.bursts.run(pool, addresses, load_stop, load_ends_at)),
            asyncio.create_task(self.cancels.run(load_stop)),
            asyncio.create_task(faults),
        ]
        await asyncio.wait(
            tasks, timeout=self.pacing.load_seconds, return_when=asyncio.FIRST_EXCEPTION
        )
        load_stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise CouldNotRun(f"a load task failed: {result!r}") from result

    async def _watch_executions(self, stop: asyncio.Event) -> None:
        while not await pause_unless(stop, self.pacing.progress_seconds / 2):
            await self._check_executions()

    async def _check_executions(self) -> None:
        for overlap in await asyncio.to_thread(self.executions.check):
            self.say(f"  DOUBLE RUN {overlap.describe()}")

    async def _progress(self, stop: asyncio.Event) -> None:
        while not await pause_unless(stop, self.pacing.progress_seconds):
            self.say(self._progress_line())
            warm = time.time() - self.load_began >= self.pacing.warmup_seconds
            if warm and not self.fds_after_warmup:
                self.fds_after_warmup = self._open_files()

    def _open_files(self) -> dict[str, dict[str, int]]:
        """Each live daemon's open descriptors by kind (and its pid)."""
        return {
            name: {"pid": node.process.pid, **fd_breakdown(node.process.pid)}
            for name, node in self.cluster.nodes.items()
            if node.process.poll() is None
        }

    def _progress_line(self) -> str:
        elapsed = time.time() - self.load_began
        phase = "load" if elapsed < self.pacing.load_seconds else "settling"
        leader = self.status.current
        counts = Counter(r.seen for r in self.cancels.records if r.acknowledged)
        kills = self.faults.counts["kill_leader"] + self.faults.counts["kill_follower"]
        resources = []
        for name in self.cluster.names:
            node = self.cluster.nodes.get(name)
            daemon = self.resources.daemons.get((name, node.process.pid)) if node else None
            if daemon is not None and daemon.points["rss_mib"]:
                rss = daemon.points["rss_mib"][-1][1]
                fds = daemon.points["fds"][-1][1]
                resources.append(f"{name} {rss:.0f}M/{fds:.0f}fd")
        return (
            f"soak {elapsed:5.0f} s ({phase}): "
            f"jobs sent {len(self.bursts.submissions)} acked {self.bursts.acknowledged()} "
            f"open {self.watchdog.open_jobs}; cancels {sum(counts.values())}; "
            f"kills {kills} stalls {self.faults.counts['stall']} "
            f"partitions {self.faults.counts['partition']}; "
            f"leader {leader[0] + ' t' + str(leader[1]) if leader else '-'}; "
            f"stuck {len(self.watchdog.stuck)} double {len(self.executions.found)} "
            f"status {len(self.honesty.violations)}; {' '.join(resources)}"
        )

    async def _wait_voters(self, within: float) -> tuple[str, int] | None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            agreed = await self.cluster.wait_agreed(
                self.cluster.names, within=deadline - time.monotonic()
            )
            if agreed is not None and len(await self.cluster.voters(agreed[0])) == len(
                self.cluster.names
            ):
                return agreed
            await asyncio.sleep(0.5)
        return None

    async def _settle(self) -> bool:
        """Until the leader lists no job not ended and every acknowledged job as ended."""
        deadline = time.monotonic() + self.bounds.settle_seconds
        acked = {s.job_id for s in self.bursts.submissions if s.acknowledged}
        while time.monotonic() < deadline:
            moment = await self.jobs.moment()
            if moment.jobs is not None and not moment.jobs:
                listed = await self._list_all()
                if listed is not None:
                    states = {job.id: job.state for job in listed}
                    if all(states.get(job_id) in ENDED for job_id in acked):
                        return True
            await asyncio.sleep(2.0)
        return False

    async def _list_all(self, name: str | None = None) -> list[FinalJob] | None:
        client = self.cluster.client(name) if name else self.status.leader_client()
        if client is None:
            return None
        try:
            jobs = await client.list_jobs(include_archived=True, timeout=60)
        except murmur.MurmurError:
            return None
        return [final_job(job) for job in jobs]

    async def _final_jobs(self) -> list[FinalJob]:
        """Every job the leader lists (archived ones too); an acknowledged job it does
        not list is looked up on every node before it counts as lost."""
        final = await self._list_all() or []
        known = {job.id for job in final}
        missing = [s.job_id for s in self.bursts.submissions if s.acknowledged]
        missing = [job_id for job_id in missing if job_id not in known]
        for job_id in missing:
            for name in self.cluster.names:
                try:
                    job = await self.cluster.client(name).get_job(job_id, timeout=10)
                except murmur.MurmurError:
                    continue
                final.append(final_job(job))
                self.notes.append(f"job {job_id} missing from the leader's list, found on {name}")
                break
        return final

    async def _still_alive(self) -> list[LiveProcess]:
        """Harness processes alive now and still 2 s later (the same pid and start)."""
        first = await asyncio.to_thread(harness_processes, self.marker, self.lab.root)
        await asyncio.sleep(2.0)
        again = {
            (p.pid, p.start_time)
            for p in await asyncio.to_thread(harness_processes, self.marker, self.lab.root)
        }
        return [p for p in first if (p.pid, p.start_time) in again and p.kind == "job"]

    async def _after_teardown(self) -> list[LiveProcess]:
        deadline = time.monotonic() + self.settings.run_lease_seconds + STOP_GRACE_SECONDS + 3.0
        while True:
            live = await asyncio.to_thread(harness_processes, self.marker, self.lab.root)
            if not live or time.monotonic() >= deadline:
                return live
            await asyncio.sleep(0.5)

    # -- the report -----------------------------------------------------------------

    def _report(
        self,
        final: list[FinalJob],
        live_at_settle: list[LiveProcess],
        live_after: list[LiveProcess],
        settled_in: float | None,
    ) -> dict[str, Any]:
        executions, unreadable = read_executions(self.results_dir, boot_time=boot_wall_time())
        run_exits = read_run_exits([self.cluster.data_dir(n) for n in self.cluster.names])
        checked = check(
            submissions=self.bursts.submissions,
            final_jobs=final,
            executions=executions,
            run_exits=run_exits,
            live_at_settle=live_at_settle,
            live_after_teardown=live_after,
            unreadable_lines=unreadable,
        )
        self.logs.read_all()
        self.honesty.logged_leaders(self.logs.terms_led)
        warmup_ends = self.load_began + self.pacing.warmup_seconds
        daemons = sorted(self.resources.daemons.values(), key=lambda d: (d.node, d.span() or 0))
        min_span = max(20.0, 0.5 * (self.pacing.load_seconds - self.pacing.warmup_seconds))
        summaries, resource_violations = resource_verdicts(
            daemons, warmup_ends=warmup_ends, min_span=min_span, bounds=self.bounds
        )
        unfinished = [job for job in final if job.state not in ENDED]
        # Allowed (a run lost with no retry left), but a job that never ran at all is
        # worth a look: a restart or a new leader cost it its only attempt.
        ran = {execution.job_id for execution in executions}
        gangs = {
            job.id
            for job in final
            if (plan := self.bursts.plans.get(job.name)) is not None and plan.nodes > 1
        }
        lost_unrun = [
            f"job {job.id} ({job.name}) lost without ever running: {job.reason}"
            for job in final
            if job.state == "lost" and job.id not in ran and job.id not in gangs
        ]
        # A gang only sleeps (see tests.soak.workload): it records no execution.
        anomalies = [
            line
            for line in checked.anomalies
            if not (line.split()[1] in gangs and "without an execution" in line)
        ]
        # A new leader sends an earlier leader's assignment again with its own term
        # (StartRunRequest.sender_term): a node that refuses it as stale is a bug.
        refused_as_stale = [line for line in lost_unrun if "is older than term" in line]
        stuck = list(self.watchdog.stuck.values())
        violations = [
            *(f"stuck {line}" for line in stuck),
            *refused_as_stale,
            *checked.violations,
            *(f"status: {line}" for line in self.honesty.violations),
            *(f"resources: {line}" for line in resource_violations),
            *(f"faults: {line}" for line in self.faults.violations),
        ]
        if settled_in is None:
            violations.append(
                f"not every job ended within {self.bounds.settle_seconds:g} s of the faults "
                f"stopping: {len(unfinished)} unfinished: "
                + "; ".join(f"{j.id} {j.state} ({j.reason})" for j in unfinished[:10])
            )
        recoveries = self.faults.recoveries
        report: dict[str, Any] = {
            "seed": self.config.seed,
            "nodes": self.config.nodes,
            "minutes": self.config.minutes,
            "partitions": self.cluster.net is not None,
            "witness": self.witness,
            "seconds": round(time.time() - self.began, 1),
            "settled_seconds": round(settled_in, 1) if settled_in is not None else None,
            "pacing": asdict(self.pacing),
            "node_settings": asdict(self.settings),
            "bounds": asdict(self.bounds),
            "jobs": _job_counts(checked, self.bursts, final),
            "cancels": {
                "acknowledged": sum(1 for r in self.cancels.records if r.acknowledged),
                "failed": sum(1 for r in self.cancels.records if not r.acknowledged),
                "by_state_seen": self.cancels.by_state(),
                "no_target_found": dict(self.cancels.missed),
            },
            "faults": {
                "kill_leader": self.faults.counts["kill_leader"],
                "kill_follower": self.faults.counts["kill_follower"],
                "stall": self.faults.counts["stall"],
                "partition": self.faults.counts["partition"],
                "agreement_after_repair_p50_s": round(statistics.median(recoveries), 1)
                if recoveries
                else None,
                "agreement_after_repair_max_s": round(max(recoveries), 1) if recoveries else None,
            },
            "checks": {
                "stuck": len(stuck),
                "unfinished_at_end": len(unfinished),
                "lost_without_running": len(lost_unrun),
                "lost": len(checked.lost_acknowledged),
                "double_runs": len(checked.overlaps),
                "double_runs_seen_live": len(self.executions.found),
                "gpu_conflicts": len(checked.gpu_conflicts),
                "duplicate_jobs": len(checked.duplicate_jobs),
                "orphans": len(checked.orphans),
                "status_violations": len(self.honesty.violations),
                "status_observations": self.honesty.observations,
                "terms_seen": len(self.honesty.leader_of_term),
                "leaderless_seconds": round(self.status.leaderless_seconds, 1),
                "longest_leaderless_seconds": round(self.status.longest_leaderless, 1),
                "resource_violations": len(resource_violations),
                "watchdog_samples": self.watchdog.samples,
                "execution_checks": self.executions.checks,
            },
            "daemons": _per_node(daemons, warmup_ends),
            "daemon_processes": summaries,
            "open_files_after_warmup": self.fds_after_warmup,
            "open_files_at_rest": self.fds_at_rest,
            "leader_recoveries_logged": dict(self.logs.recoveries),
            "log_errors": dict(self.logs.errors),
            "log_error_samples": self.logs.error_samples,
            "violations": violations,
            "anomalies": [*lost_unrun, *anomalies][:100],
            "notes": [*self.notes, *self.faults.notes],
        }
        history = {
            "report": report,
            "submissions": to_json(self.bursts.submissions),
            "faults": to_json(self.faults.events),
            "down": [asdict(w) for w in self.downtime.windows],
            "cancels": [asdict(r) for r in self.cancels.records],
            "final_jobs": [asdict(job) for job in final],
            "terms_led": {n: sorted(t) for n, t in self.logs.terms_led.items()},
        }
        (self.config.workdir / "history.json").write_text(
            json.dumps(history, indent=1, default=str)
        )
        return report


def _job_counts(checked: CheckReport, bursts: Bursts, final: list[FinalJob]) -> dict[str, int]:
    kinds = Counter(plan.kind.value for plan in bursts.plans.values())
    return {
        "planned": len(bursts.plans),
        "submitted": checked.submitted,
        "acknowledged": checked.acknowledged,
        "unknown_outcome": checked.unknown,
        "succeeded": checked.succeeded,
        "failed": checked.failed,
        "cancelled": checked.cancelled,
        "lost_state": checked.lost_state,
        "lost": len(checked.lost_acknowledged),
        "unfinished": checked.unfinished,
        "rerun": checked.rerun,
        "executions": checked.executions,
        "bursts": bursts.bursts,
        **{f"kind_{kind}": count for kind, count in sorted(kinds.items())},
        "listed_at_end": len(final),
    }


def _per_node(daemons: list[DaemonSeries], warmup_ends: float) -> dict[str, dict[str, Any]]:
    """Per node: its first daemon's figures just after the warm-up (or its first sample)
    and its last daemon's last figures (at rest, after the settle); restarts."""
    found: dict[str, dict[str, Any]] = {}
    for node in sorted({d.node for d in daemons}):
        mine = [d for d in daemons if d.node == node]
        entry: dict[str, Any] = {"processes": len(mine)}
        for metric in ("rss_mib", "fds", "threads", "tasks"):
            points = [p for d in mine for p in d.points[metric]]
            if not points:
                continue
            after = [p for p in points if p[0] >= warmup_ends] or points
            entry[metric] = [round(after[0][1], 1), round(points[-1][1], 1)]
        found[node] = entry
    return found
