"""One chaos session: a fresh cluster, load and faults, healing, settling, the check.

The order of a session:

1. start five nodes (short run lease, fast voter promotion), wait until all
   agree on a leader and five voters;
2. start the submitter, then play the fault schedule round by round; after each
   repair, wait until every reachable node agrees on a leader again;
3. stop submitting, heal the network, restart every killed node, wait for one
   leader, then until every known job has ended (or the settle timeout);
4. list the jobs, look for live job processes (twice, 2 s apart: only a process
   alive both times counts), tear the lab down, give runs their lease and grace
   to stop, look again, read the execution files and the runs' exit records;
5. :func:`tests.chaos.checker.check`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import murmur
from murmur.v1 import types_pb2
from tests.chaos.checker import CheckReport, FinalJob, FinalRun, LiveProcess, check
from tests.chaos.cluster import ChaosCluster
from tests.chaos.history import (
    FaultEvent,
    boot_wall_time,
    read_executions,
    read_run_exits,
    to_json,
)
from tests.chaos.load import Submitter
from tests.chaos.network import SplittableHosts
from tests.chaos.processes import harness_processes
from tests.chaos.schedule import FaultKind, FaultStep
from tests.support.nodes import create_lab

STOP_GRACE_SECONDS = 10.0
"""The daemons' stop grace (their default): a stubborn run gets this long after SIGTERM."""


@dataclass(frozen=True)
class SessionConfig:
    workdir: Path
    steps: Sequence[FaultStep]
    seed: int
    size: int = 5
    lease_seconds: float = 3.0
    rate: float = 2.5
    """Submissions a second."""
    max_jobs: int = 10_000
    settle_timeout: float = 150.0
    netns_prefix: str | None = None
    """Run on namespaced hosts of this prefix (made by the caller); None: loopback."""
    simulate_gpus: str = "2xA100-80GB"


@dataclass
class RoundSummary:
    round: int
    fault: str
    targets: list[str]
    leader_before: str
    term_before: int
    leader_after: str = ""
    term_after: int = 0
    recovery_seconds: float = 0.0
    """From the repair (restart or heal) until every node agreed on a leader."""
    acknowledged: int = 0
    failed_attempts: int = 0
    seconds: float = 0.0
    note: str = ""

    def line(self) -> str:
        after = f"{self.leader_after} t{self.term_after}" if self.leader_after else "NO AGREEMENT"
        return (
            f"round {self.round:3d} {self.fault:<40} targets {','.join(self.targets):<15} "
            f"leader {self.leader_before} t{self.term_before} -> {after} "
            f"(agreed {self.recovery_seconds:.1f} s after repair) "
            f"acked {self.acknowledged} failed attempts {self.failed_attempts} "
            f"[{self.seconds:.0f} s]{' ' + self.note if self.note else ''}"
        )


@dataclass
class SessionResult:
    seed: int
    workdir: Path
    rounds: list[RoundSummary] = field(default_factory=list)
    report: CheckReport = field(default_factory=CheckReport)
    settled: bool = False
    settle_seconds: float = 0.0
    seconds: float = 0.0
    partitions: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "workdir": str(self.workdir),
            "partitions": self.partitions,
            "settled": self.settled,
            "settle_seconds": round(self.settle_seconds, 1),
            "seconds": round(self.seconds, 1),
            "counts": self.report.counts(),
            "violations": self.report.violations,
            "anomalies": self.report.anomalies,
            "rounds": [asdict(r) for r in self.rounds],
        }


def final_job(job: types_pb2.Job) -> FinalJob:
    def state(value: int) -> str:
        return types_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]

    return FinalJob(
        id=job.id,
        name=job.spec.name,
        state=state(job.state),
        runs=tuple(FinalRun(run.id, run.node, state(run.state)) for run in job.runs),
        reason=job.reason,
    )


async def run_session(config: SessionConfig, say: Callable[[str], None] = print) -> SessionResult:
    began = time.monotonic()
    rng = random.Random(config.seed)
    result = SessionResult(seed=config.seed, workdir=config.workdir)
    lab = create_lab(config.workdir / "lab")
    results_dir = config.workdir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    marker = uuid.uuid4().hex
    net = None
    if config.netns_prefix is not None:
        net = SplittableHosts(config.size, prefix=config.netns_prefix)
        result.partitions = True
    env = {
        "MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1",
        "MURMUR_NODE_RUN_LEASE_SECONDS": f"{config.lease_seconds:g}",
        "MURMUR_NODE_STOP_GRACE_SECONDS": f"{STOP_GRACE_SECONDS:g}",
        "MURMUR_NODE_RETRY_BACKOFF_SECONDS": "1",
        "MURMUR_GOSSIP_RECONNECT_INTERVAL": "2",
    }
    cluster = ChaosCluster(
        lab,
        size=config.size,
        env=env,
        extra_args=["--simulate-gpus", config.simulate_gpus],
        net=net,
    )
    faults: list[FaultEvent] = []
    submitter = Submitter(
        cluster,
        rng=random.Random(rng.random()),
        session=f"s{config.seed}",
        results_dir=results_dir,
        marker=marker,
        rate=config.rate,
    )
    try:
        await asyncio.to_thread(cluster.start)
        agreed = await _wait_voters(cluster, config.size, within=90)
        if agreed is None:
            raise RuntimeError(f"the cluster never agreed on a leader; logs in {lab.root}")
        say(f"cluster up: leader {agreed[0]} term {agreed[1]}, {config.size} voters")
        load = asyncio.create_task(submitter.run(config.max_jobs))
        for step in config.steps:
            summary = await _play(cluster, step, submitter, faults)
            result.rounds.append(summary)
            say(summary.line())
        submitter.stop()
        await load
        await submitter.drain()
        await _repair_all(cluster, faults, round_number=0)
        settle_began = time.monotonic()
        final = await _settle(cluster, submitter, config.settle_timeout)
        result.settle_seconds = time.monotonic() - settle_began
        result.settled = all(job.state in ("succeeded", "failed", "cancelled", "lost")
                             for job in final)  # fmt: skip
        live_at_settle = await _still_alive(marker, lab.root)
    finally:
        await cluster.close_clients()
        cluster.stop_all()
        if net is not None:
            cluster.heal()
    live_after = await _after_teardown(marker, lab.root, config.lease_seconds)
    executions, unreadable = read_executions(results_dir, boot_time=boot_wall_time())
    run_exits = read_run_exits([cluster.data_dir(name) for name in cluster.names])
    result.report = check(
        submissions=submitter.submissions,
        final_jobs=final,
        executions=executions,
        run_exits=run_exits,
        live_at_settle=[p for p in live_at_settle if p.kind == "job"],
        live_after_teardown=live_after,
        unreadable_lines=unreadable,
    )
    result.seconds = time.monotonic() - began
    history = {
        "session": result.to_json(),
        "submissions": to_json(submitter.submissions),
        "faults": to_json(faults),
        "final_jobs": [asdict(job) for job in final],
        "executions": to_json(executions),
        "run_exits": run_exits,
        "live_at_settle": [asdict(p) for p in live_at_settle],
        "live_after_teardown": [asdict(p) for p in live_after],
    }
    (config.workdir / "history.json").write_text(json.dumps(history, indent=1, default=str))
    return result


async def _wait_voters(cluster: ChaosCluster, voters: int, within: float) -> tuple[str, int] | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        agreed = await cluster.wait_agreed(cluster.names, within=deadline - time.monotonic())
        if agreed is not None and len(await cluster.voters(agreed[0])) == voters:
            return agreed
        await asyncio.sleep(0.5)
    return None


def _targets(step: FaultStep, leader: str, names: Sequence[str]) -> list[str]:
    others = sorted(name for name in names if name != leader)
    first = others[step.pick % len(others)]
    second = others[(step.pick + 1) % len(others)]
    if step.kind is FaultKind.KILL_LEADER:
        return [leader]
    if step.kind is FaultKind.KILL_FOLLOWER:
        return [first]
    if step.kind is FaultKind.KILL_TWO:
        return [leader, first] if step.with_leader else [first, second]
    group = [leader, first, second] if step.with_leader else [first, second]
    return group[: step.size]


async def _play(
    cluster: ChaosCluster, step: FaultStep, submitter: Submitter, faults: list[FaultEvent]
) -> RoundSummary:
    began_wall, began = time.time(), time.monotonic()
    failed_before = submitter.failed_attempts()
    agreed = await cluster.wait_agreed(cluster.names, within=60)
    leader, term = agreed if agreed is not None else ("", 0)
    targets = _targets(step, leader or cluster.names[0], cluster.names)
    summary = RoundSummary(
        round=step.round,
        fault=step.describe(),
        targets=targets,
        leader_before=leader or "?",
        term_before=term,
    )
    if step.kind is FaultKind.PARTITION:
        cluster.partition(targets)
        faults.append(FaultEvent(time.time(), step.round, "partition", tuple(targets)))
        await asyncio.sleep(step.pause)
        cluster.heal()
        faults.append(FaultEvent(time.time(), step.round, "heal", tuple(targets)))
    else:
        for name in targets:
            cluster.kill(name)
            faults.append(FaultEvent(time.time(), step.round, "kill", (name,)))
        await asyncio.sleep(step.pause)
        for name in targets:
            await asyncio.to_thread(cluster.restart, name)
            faults.append(FaultEvent(time.time(), step.round, "restart", (name,)))
    repaired = time.monotonic()
    after = await cluster.wait_agreed(cluster.names, within=60)
    if after is not None:
        summary.leader_after, summary.term_after = after
        summary.recovery_seconds = time.monotonic() - repaired
    else:
        summary.note = "the nodes did not agree on a leader within 60 s"
    await asyncio.sleep(step.settle)
    summary.acknowledged = submitter.acknowledged_between(began_wall, time.time())
    summary.failed_attempts = submitter.failed_attempts() - failed_before
    summary.seconds = time.monotonic() - began
    return summary


async def _repair_all(cluster: ChaosCluster, faults: list[FaultEvent], round_number: int) -> None:
    if cluster.cut_off:
        faults.append(FaultEvent(time.time(), round_number, "heal", tuple(cluster.cut_off)))
        cluster.heal()
    for name in sorted(cluster.killed):
        await asyncio.to_thread(cluster.restart, name)
        faults.append(FaultEvent(time.time(), round_number, "restart", (name,)))
    await cluster.wait_agreed(cluster.names, within=60)


async def _list_jobs(cluster: ChaosCluster) -> list[FinalJob] | None:
    agreed = await cluster.agreed_leader(cluster.names)
    if agreed is None:
        return None
    try:
        jobs = await cluster.client(agreed[0]).list_jobs(timeout=20)
    except murmur.MurmurError:
        return None
    return [final_job(job) for job in jobs]


async def _settle(cluster: ChaosCluster, submitter: Submitter, within: float) -> list[FinalJob]:
    """The leader's job list once every job has ended, or the last one seen after
    ``within`` seconds."""
    deadline = time.monotonic() + within
    last: list[FinalJob] = []
    while True:
        listed = await _list_jobs(cluster)
        if listed is not None:
            last = listed
            ids = {job.id for job in listed}
            acked_listed = all(s.job_id in ids for s in submitter.submissions if s.job_id)
            if acked_listed and all(
                job.state in ("succeeded", "failed", "cancelled", "lost") for job in listed
            ):
                return listed
        if time.monotonic() >= deadline:
            return last
        await asyncio.sleep(1.0)


async def _still_alive(marker: str, lab_root: Path) -> list[LiveProcess]:
    """Harness processes alive now and still 2 s later (the same pid and start time)."""
    first = await asyncio.to_thread(harness_processes, marker, lab_root)
    await asyncio.sleep(2.0)
    second = await asyncio.to_thread(harness_processes, marker, lab_root)
    again = {(p.pid, p.start_time) for p in second}
    return [p for p in first if (p.pid, p.start_time) in again]


async def _after_teardown(marker: str, lab_root: Path, lease_seconds: float) -> list[LiveProcess]:
    """Harness processes alive once every run had its lease and grace to stop."""
    deadline = time.monotonic() + lease_seconds + STOP_GRACE_SECONDS + 3.0
    while True:
        live = await asyncio.to_thread(harness_processes, marker, lab_root)
        if not live or time.monotonic() >= deadline:
            return live
        await asyncio.sleep(0.5)
