"""Leader failover and the replicated job queue on real daemons: separate
``murmur node start`` processes on 127.0.0.x over mutual TLS, 3 voters, production
Raft timings (only the voter stabilization wait is cut to 1 s, as in the tests).

Run with ``python -m tests.bench.bench_consensus [--trials 20] [--quick]``.

1. Leader failover: ``kill -9`` of the leader of a 3-node cluster, ``--trials``
   times. Right after the kill a client attached to a survivor submits a process
   job (``true``): the survivor waits for a leader and forwards it. The figure is
   kill → the job has a run (the new leader placed it), seen by ``GetJob`` every
   10 ms. Beside it: kill → every survivor names the same new leader (``GetStatus``
   every 10 ms), and from the daemons' logs kill → the winner's ``consensus.state``
   naming itself leader and → its ``leader.start``. The victim is restarted on its
   data dir between trials, and the next trial waits for 3 agreed voters.
2. Submissions accepted per second through gRPC: one client process with
   ``--inflight`` concurrent submissions to a follower (forwarded) and to the
   leader, then eight client processes (their own AsyncClient each, same
   concurrency each) to random nodes, ``--seconds`` each, a fresh cluster each.
   The jobs ask for 64 GPUs of 2-GPU nodes: valid, never placeable, they stay
   pending with a reason, so this measures acceptance (a quorum commit) only.
3. Submit on A → running on C: a ``sleep 0.5`` process job submitted to a
   follower A, ``--samples`` times one after another; the time from the submit
   call's start to the job's RUNNING (or later) state on a WatchJobs stream
   opened on A (relayed from the leader).

Log times are wall clock with milliseconds, from the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from murmur import AsyncClient, MurmurError, resolve_connect_config
from murmur.v1 import cluster_pb2, types_pb2
from tests.bench.run import percentile
from tests.support.cluster import client_for, start_cluster, status_of
from tests.support.nodes import Lab, NodeProcess, create_lab

NODE_ENV = {"MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1"}
NODE_ARGS = ["--simulate-gpus", "2xA100-80GB", "--log-level", "info"]
AGREE_TIMEOUT = 60.0
TRIAL_TIMEOUT = 20.0
POLL_SECONDS = 0.01
TICKS = os.sysconf("SC_CLK_TCK")

SCHEDULED = {
    types_pb2.JOB_STATE_SCHEDULED,
    types_pb2.JOB_STATE_STARTING,
    types_pb2.JOB_STATE_RUNNING,
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
}
RUNNING_OR_LATER = {
    types_pb2.JOB_STATE_RUNNING,
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
}


def process_spec(*command: str, gpus: int = 0) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=list(command),
        gpus=types_pb2.GpuRequest(count=gpus),
    )


def seconds(value: float) -> str:
    return f"{value:.3f} s"


def log_events(node: NodeProcess, since_wall: float) -> list[dict[str, Any]]:
    """The node's JSON log records (all its runs) at or after ``since_wall``."""
    records = []
    with node.log_path.open("rb") as handle:
        for line in handle:
            if not line.startswith(b"{"):
                continue
            try:
                record = json.loads(line)
                at = datetime.fromisoformat(str(record["time"])).timestamp()
            except (ValueError, KeyError):
                continue
            if at >= since_wall:
                record["_at"] = at
                records.append(record)
    return records


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


# --- the cluster ------------------------------------------------------------------------


async def wait_agreed(nodes: Sequence[NodeProcess], lab: Lab, voters: int = 3) -> str:
    """The leader, once every node names the same one and ``voters`` voters."""
    deadline = time.monotonic() + AGREE_TIMEOUT
    while time.monotonic() < deadline:
        seen = await asyncio.gather(*(status_of(node, lab) for node in nodes))
        claims = {(s.leader, s.term, tuple(sorted(s.voters))) for s in seen if s is not None}
        if None not in seen and len(claims) == 1:
            leader, _, names = claims.pop()
            if leader and len(names) == voters:
                return leader
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no agreed leader with {voters} voters in {AGREE_TIMEOUT:.0f} s")


def new_cluster(root: Path, labs: list[Lab]) -> tuple[Lab, list[NodeProcess]]:
    lab = create_lab(root / f"lab-{len(labs)}")
    labs.append(lab)
    nodes = start_cluster(lab, 3, extra_args=NODE_ARGS, env=NODE_ENV)
    return lab, nodes


def by_name(nodes: Sequence[NodeProcess], name: str) -> NodeProcess:
    return next(node for node in nodes if node.name == name)


# --- 1. leader failover -----------------------------------------------------------------


@dataclass
class Failover:
    scheduled: list[float] = field(default_factory=list)
    """kill → the job submitted right after it has a run."""
    agreed: list[float] = field(default_factory=list)
    """kill → every survivor names the same new leader (GetStatus)."""
    elected: list[float] = field(default_factory=list)
    """kill → the winner's log says it leads (consensus.state)."""
    leading: list[float] = field(default_factory=list)
    """kill → the winner's leader.start (its duties begin)."""
    submit_returned: list[float] = field(default_factory=list)
    """kill → SubmitJob answered (committed by the new leader's quorum)."""
    all_know: list[float] = field(default_factory=list)
    """kill → every survivor's log names the new leader (consensus.state)."""
    placed_on: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def poll_scheduled(client: AsyncClient, job_id: str, killed: float) -> tuple[float, str]:
    while True:
        try:
            job = await client.get_job(job_id, timeout=5)
        except MurmurError:
            job = None
        if job is not None and job.runs and job.state in SCHEDULED:
            return time.perf_counter() - killed, job.runs[-1].node
        await asyncio.sleep(POLL_SECONDS)


async def poll_agreed(clients: Sequence[AsyncClient], victim: str, killed: float) -> float:
    async def named(client: AsyncClient) -> str:
        try:
            status = await client.status(timeout=2)
        except MurmurError:
            return ""
        return status.leader

    while True:
        leaders = set(await asyncio.gather(*(named(client) for client in clients)))
        if len(leaders) == 1 and (leader := leaders.pop()) and leader != victim:
            return time.perf_counter() - killed
        await asyncio.sleep(POLL_SECONDS)


async def one_failover(lab: Lab, nodes: list[NodeProcess], result: Failover, trial: int) -> None:
    leader = await wait_agreed(nodes, lab)
    victim = by_name(nodes, leader)
    survivors = [node for node in nodes if node is not victim]
    submitter = random.Random(trial).choice(survivors)
    clients = [client_for(node, lab.admin_identity) for node in survivors]
    try:
        for client in clients:
            await client.whoami(timeout=5)  # channels connected before the kill
        client = clients[survivors.index(submitter)]
        killed_wall = time.time()
        killed = time.perf_counter()
        victim.process.kill()

        async def submit_and_wait() -> float:
            job = await client.submit_job(process_spec("true"), timeout=TRIAL_TIMEOUT)
            result.submit_returned.append(time.perf_counter() - killed)
            took, node = await poll_scheduled(client, job.id, killed)
            result.placed_on.append(node)
            return took

        outcomes = await asyncio.gather(
            asyncio.wait_for(submit_and_wait(), timeout=TRIAL_TIMEOUT),
            asyncio.wait_for(poll_agreed(clients, leader, killed), timeout=TRIAL_TIMEOUT),
            return_exceptions=True,
        )
    finally:
        for client in clients:
            await client.close()
    victim.process.wait(timeout=10)
    scheduled, agreed = (value if isinstance(value, float) else float("inf") for value in outcomes)
    failures = [repr(value)[:200] for value in outcomes if not isinstance(value, float)]
    result.failures += [f"trial {trial + 1}: {failure}" for failure in failures]
    result.scheduled.append(scheduled)
    result.agreed.append(agreed)
    elected, all_know, leading = winner_times(survivors, killed_wall, leader)
    result.elected.append(elected)
    result.all_know.append(all_know)
    result.leading.append(leading)
    print(
        f"  trial {trial + 1}: killed {leader}, submitted to {submitter.name}; "
        f"elected (log) {elected:.3f} s, all survivors know (log) {all_know:.3f} s, "
        f"leader.start {leading:.3f} s, GetStatus agreed {agreed:.3f} s, "
        f"job scheduled {scheduled:.3f} s {' '.join(failures)}",
        flush=True,
    )
    nodes[nodes.index(victim)] = lab.restart(victim)


def winner_times(
    survivors: Sequence[NodeProcess], killed_wall: float, victim: str
) -> tuple[float, float, float]:
    """From the logs, seconds from the kill until: the first survivor logs itself
    leader; every survivor has logged a new leader; the first ``leader.start``."""
    elected, leading, knows = [], [], []
    for node in survivors:
        known = []
        for record in log_events(node, killed_wall):
            at = float(record["_at"]) - killed_wall
            if record.get("event") == "consensus.state":
                named = record.get("leader")
                if named == node.name:
                    elected.append(at)
                if named and named != victim:
                    known.append(at)
            elif record.get("event") == "leader.start":
                leading.append(at)
        knows.append(min(known, default=float("inf")))
    nan = float("nan")
    return min(elected, default=nan), max(knows), min(leading, default=nan)


async def bench_failover(root: Path, labs: list[Lab], trials: int) -> Failover:
    result = Failover()
    lab, nodes = new_cluster(root, labs)
    for trial in range(trials):
        await one_failover(lab, nodes, result, trial)
    lab.stop_all()
    return result


# --- 2. submissions per second ----------------------------------------------------------

UNPLACEABLE = process_spec("true", gpus=64)
"""Valid, but no 2-GPU node can ever hold it: it stays pending with a reason."""


async def submit_for(
    addresses: Sequence[str], identity: str, inflight: int, start_at: float, seconds: float
) -> tuple[int, int]:
    """(accepted within the window, errors): ``inflight`` tasks, each submitting to a
    random one of ``addresses`` in a loop from wall time ``start_at`` for ``seconds``."""
    clients = [
        AsyncClient(resolve_connect_config(node=address, identity=identity))
        for address in addresses
    ]
    try:
        for client in clients:
            await client.whoami(timeout=10)
        rng = random.Random()
        accepted = errors = 0
        first_errors: list[str] = []
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal accepted, errors
            while time.perf_counter() < end:
                try:
                    await rng.choice(clients).submit_job(UNPLACEABLE, timeout=30)
                except MurmurError as exc:
                    errors += 1
                    if len(first_errors) < 3:
                        first_errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                    continue
                if time.perf_counter() <= end:
                    accepted += 1

        await asyncio.gather(*(worker() for _ in range(inflight)))
        for error in first_errors:
            print(f"    submission failed: {error}", flush=True)
        return accepted, errors
    finally:
        for client in clients:
            await client.close()


def submit_process(
    addresses: list[str], identity: str, inflight: int, start_at: float, seconds: float
) -> tuple[int, int]:
    return asyncio.run(submit_for(addresses, identity, inflight, start_at, seconds))


@dataclass(frozen=True)
class Rate:
    label: str
    per_second: float
    errors: int
    pending_after: int
    target: str
    cpu: dict[str, float]
    """Daemon → CPU seconds per second of the window (its start-up included)."""

    def cpu_text(self) -> str:
        return ", ".join(f"{name} {share:.0%}" for name, share in sorted(self.cpu.items()))


def pending_count(status: cluster_pb2.ClusterStatus | None) -> int:
    if status is None:
        return -1
    return int(status.jobs_by_state.get("pending", 0))


async def bench_rates(root: Path, labs: list[Lab], inflight: int, window: float) -> list[Rate]:
    rates = []
    context = multiprocessing.get_context("spawn")  # never fork a process that ran gRPC
    for label, clients, target in (
        ("1 client → a follower (forwarded)", 1, "≥ 500/s (Slurm here 264/s)"),
        ("1 client → the leader", 1, "≥ 500/s (Slurm here 264/s)"),
        ("8 client processes → random nodes", 8, "≥ 1,000/s (Slurm here 517/s)"),
    ):
        lab, nodes = new_cluster(root, labs)
        try:
            leader = await wait_agreed(nodes, lab)
            if "follower" in label:
                addresses = [next(n for n in nodes if n.name != leader).address]
            elif "leader" in label:
                addresses = [by_name(nodes, leader).address]
            else:
                addresses = [n.address for n in nodes]
            identity = str(lab.admin_identity)
            start_at = time.time() + (6.0 if clients > 1 else 1.0)
            ticks_before = {node.name: cpu_ticks(node.process.pid) for node in nodes}
            with context.Pool(clients) as pool:
                counts = pool.starmap(
                    submit_process, [(addresses, identity, inflight, start_at, window)] * clients
                )
            cpu = {
                ("leader " if node.name == leader else "") + node.name: (
                    cpu_ticks(node.process.pid) - ticks_before[node.name]
                )
                / TICKS
                / window
                for node in nodes
            }
            accepted = sum(count for count, _ in counts)
            errors = sum(error for _, error in counts)
            status = await status_of(by_name(nodes, leader), lab)
            rate = Rate(label, accepted / window, errors, pending_count(status), target, cpu)
            rates.append(rate)
            print(
                f"  {label}: {rate.per_second:,.0f}/s ({errors} errors, "
                f"{rate.pending_after} pending after; {rate.cpu_text()})",
                flush=True,
            )
        finally:
            lab.stop_all()
    return rates


# --- 3. submit on A → running on C ------------------------------------------------------


@dataclass
class Placement:
    only_c: bool
    latencies: list[float] = field(default_factory=list)
    landed: dict[str, int] = field(default_factory=dict)


async def bench_submit_to_running(
    root: Path, labs: list[Lab], samples: int, *, only_c: bool
) -> Placement:
    """``only_c``: A and the leader B are drained, so every job runs on the third node."""
    result = Placement(only_c=only_c)
    lab, nodes = new_cluster(root, labs)
    try:
        leader = await wait_agreed(nodes, lab)
        follower = next(node for node in nodes if node.name != leader)
        if only_c:
            for name in (follower.name, leader):
                drained = lab.murmur("node", "drain", name, "--node", follower.address)
                if drained.returncode != 0:
                    raise RuntimeError(f"drain {name}: {drained.stderr}")
            await asyncio.sleep(2.0)  # the drains reach the leader's view by gossip
        seen: dict[str, float] = {}
        landed: dict[str, str] = {}
        changed = asyncio.Event()
        async with client_for(follower, lab.admin_identity) as client:

            async def watch() -> None:
                async for job in client.watch_jobs():
                    if job.state in RUNNING_OR_LATER and job.id not in seen:
                        seen[job.id] = time.perf_counter()
                        landed[job.id] = job.runs[-1].node if job.runs else "?"
                        changed.set()

            watcher = asyncio.create_task(watch())
            try:
                await asyncio.sleep(0.5)  # the stream is open before the first submission
                for _ in range(samples):
                    start = time.perf_counter()
                    job = await client.submit_job(process_spec("sleep", "0.5"))
                    deadline = time.monotonic() + TRIAL_TIMEOUT
                    while job.id not in seen:
                        if watcher.done():
                            watcher.result()
                            raise RuntimeError("the job stream ended")
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"job {job.id} not running in {TRIAL_TIMEOUT} s")
                        changed.clear()
                        await asyncio.wait_for(changed.wait(), timeout=TRIAL_TIMEOUT)
                    result.latencies.append(seen[job.id] - start)
                    where = landed[job.id]
                    role = "A" if where == follower.name else "B" if where == leader else "C"
                    key = f"{where} ({role})"
                    result.landed[key] = result.landed.get(key, 0) + 1
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    finally:
        lab.stop_all()
    return result


# --- report -----------------------------------------------------------------------------


def quantiles(values: list[float]) -> str:
    valid = [v for v in values if v == v]
    if not valid:
        return "n/a | n/a | n/a | n/a"
    return (
        " | ".join(seconds(percentile(valid, q)) for q in (0.5, 0.9, 0.99))
        + f" | {seconds(max(valid))}"
    )


def report_failover(result: Failover) -> None:
    n = len(result.scheduled)
    print(f"\nLeader failover, 3 voters, kill -9 of the leader, {n} trials")
    print("| kill → | p50 | p90 | p99 | max | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| new leader schedules the job submitted at the kill | {quantiles(result.scheduled)} "
        "| p50 ≤ 1.0 s, p99 ≤ 2.0 s (etcd 3.4 here: p50 1.25 s, p90 1.57 s, max 2.1 s) |"
    )
    print(f"| every survivor names the new leader (GetStatus) | {quantiles(result.agreed)} | |")
    print(f"| winner logs itself leader (consensus.state) | {quantiles(result.elected)} | |")
    print(f"| every survivor's log names it (consensus.state) | {quantiles(result.all_know)} | |")
    print(f"| winner's duties start (leader.start) | {quantiles(result.leading)} | |")
    print(f"| SubmitJob answered (committed) | {quantiles(result.submit_returned)} | |")
    on = {name: result.placed_on.count(name) for name in sorted(set(result.placed_on))}
    print(f"jobs placed on: {on}")
    for failure in result.failures:
        print(f"failed: {failure}")


def report_rates(rates: list[Rate], inflight: int, window: float) -> None:
    print(f"\nSubmissions accepted through gRPC, {inflight} in flight per client, {window:g} s")
    print("| clients | accepted/s | errors | pending after | daemon CPU (of a core) | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rate in rates:
        print(
            f"| {rate.label} | {rate.per_second:,.0f} | {rate.errors} | {rate.pending_after} "
            f"| {rate.cpu_text()} | {rate.target} |"
        )


def report_placement(results: list[Placement]) -> None:
    print("\nSubmit on follower A → RUNNING seen on a WatchJobs stream on A, sequential jobs")
    print("| `sleep 0.5` process job | samples | p50 | p90 | p99 | max | target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        samples = result.latencies
        where = "A and B drained: runs on C" if result.only_c else "lands where placed"
        print(f"| {where} | {len(samples)} | {quantiles(samples)} | p50 ≤ 0.3 s, p99 ≤ 2 s |")
        print(f"mean {seconds(statistics.mean(samples))}; landed on: {result.landed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="failover trials")
    parser.add_argument("--samples", type=int, default=50, help="submit → running samples")
    parser.add_argument("--seconds", type=float, default=5.0, help="submission window")
    parser.add_argument("--inflight", type=int, default=64, help="concurrent submissions/client")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 1,3")
    parser.add_argument("--keep", metavar="DIR", help="keep the labs (daemon logs) in DIR")
    parser.add_argument("--quick", action="store_true", help="few trials, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.samples, args.seconds = 3, 10, 2.0
    parts = {int(part) for part in args.parts.split(",")}
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    labs: list[Lab] = []
    with tempfile.TemporaryDirectory(prefix="murmur-bench-consensus-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        try:
            failover = rates = None
            placement: list[Placement] = []
            if 1 in parts:
                print("1. leader failover", flush=True)
                failover = asyncio.run(bench_failover(root, labs, args.trials))
            if 2 in parts:
                print("2. submissions per second", flush=True)
                rates = asyncio.run(bench_rates(root, labs, args.inflight, args.seconds))
            if 3 in parts:
                print("3. submit on A → running", flush=True)
                placement = [
                    asyncio.run(bench_submit_to_running(root, labs, args.samples, only_c=only_c))
                    for only_c in (False, True)
                ]
        finally:
            for lab in labs:
                lab.stop_all()
        if failover is not None:
            report_failover(failover)
        if rates is not None:
            report_rates(rates, args.inflight, args.seconds)
        if placement:
            report_placement(placement)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
