"""Idle cost per role on real clusters: separate ``murmur node start`` processes on
127.0.0.x, mutual TLS, production Raft and gossip timings (only the voter
stabilization wait is cut to 1 s, so that the voters are chosen within the run).

Run with ``python -m tests.bench.bench_idle [--sizes 5,32] [--window 40]``.

For each cluster size N it starts N nodes (as ``bench_membership`` does), waits
until the cluster is settled (sampled nodes see every node alive, every sampled
node names the same leader and ``min(N, 5)`` voters), lets start-up traffic drain,
then samples each daemon's CPU time (utime+stime from /proc, the daemon and its
children: the fork server) and RSS (the daemon plus its children) over
``--window`` seconds of idle. It reports, per role (the leader, the other voters,
the nodes that only gossip), the mean CPU % of one core with its min-max, and the
mean RSS; the roles are checked again after the window (a leader change during it
is reported, and the size measured again).

The machine has 2 cores: at N=32 sixteen daemons share each, so the figures
include contention a real lab (one daemon per server) would not have; other
processes running meanwhile add noise, so repeat a run that looks off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from murmur.certs import Role
from murmur.v1 import cluster_pb2
from tests.bench.bench_membership import start_nodes, wait_all_see
from tests.support.cluster import status_of
from tests.support.nodes import Lab, NodeProcess, create_lab

FAST_VOTERS = {"MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1"}
MAX_VOTERS = 5
SETTLE_TIMEOUT = 240.0
QUIET_SECONDS = 10.0
"""Left to start-up's broadcasts and the voters' catch-up before the window."""
TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("leader", "voter", "gossip only")


@dataclass
class Sample:
    name: str
    role: str
    cpu_percent: float
    rss_mb: float


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the daemon's fork server and what it runs)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_mb(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def settled_roles(nodes: list[NodeProcess], lab: Lab) -> tuple[str, frozenset[str]]:
    """(leader, voters) once sampled nodes agree on a leader and the full voter set."""
    voters_wanted = min(len(nodes), MAX_VOTERS)
    watchers = nodes if len(nodes) <= 8 else nodes[:4] + nodes[-4:]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        seen = await asyncio.gather(*(status_of(node, lab) for node in watchers))
        claims = {(s.leader, s.term, frozenset(s.voters)) for s in seen if s is not None}
        if None not in seen and len(claims) == 1:
            leader, _, voters = claims.pop()
            if leader and len(voters) == voters_wanted:
                return leader, voters
        await asyncio.sleep(1.0)
    raise TimeoutError(f"no agreed leader with {voters_wanted} voters in {SETTLE_TIMEOUT:.0f} s")


def role_of(name: str, leader: str, voters: frozenset[str]) -> str:
    if name == leader:
        return "leader"
    return "voter" if name in voters else "gossip only"


def measure(nodes: list[NodeProcess], window: float) -> dict[str, tuple[float, float]]:
    """Per node name: (CPU % of one core over ``window``, RSS MB at its end), each of
    the daemon with its children."""
    trees = {node.name: [node.process.pid, *children_of(node.process.pid)] for node in nodes}
    before = {name: sum(cpu_ticks(pid) for pid in pids) for name, pids in trees.items()}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    after = {name: sum(cpu_ticks(pid) for pid in pids) for name, pids in trees.items()}
    return {
        name: (
            (after[name] - before[name]) / TICKS / elapsed * 100,
            sum(rss_mb(pid) for pid in pids),
        )
        for name, pids in trees.items()
    }


def bench_size(n: int, window: float, root: Path) -> list[Sample]:
    lab = create_lab(root)
    lab.issue_identity("bench", Role.ADMIN)
    nodes: list[NodeProcess] = []
    try:
        start_nodes(lab, n, 1, nodes, FAST_VOTERS)
        asyncio.run(wait_all_see(nodes, lab.admin_identity))
        leader, voters = asyncio.run(settled_roles(nodes, lab))
        time.sleep(QUIET_SECONDS)
        for _ in range(3):
            figures = measure(nodes, window)
            status: cluster_pb2.ClusterStatus | None = asyncio.run(status_of(nodes[0], lab))
            if status is not None and (status.leader, frozenset(status.voters)) == (
                leader,
                voters,
            ):
                break
            print(f"  N={n}: roles changed during the window ({status}); measuring again")
            leader, voters = asyncio.run(settled_roles(nodes, lab))
        return [
            Sample(name, role_of(name, leader, voters), cpu, rss)
            for name, (cpu, rss) in figures.items()
        ]
    finally:
        lab.stop_all()


def report(n: int, samples: list[Sample]) -> None:
    print(f"\nN={n}")
    print("| role | nodes | idle CPU, mean (min-max) | RSS, mean |")
    print("| --- | --- | --- | --- |")
    for role in ROLES:
        mine = [s for s in samples if s.role == role]
        if not mine:
            continue
        cpus = [s.cpu_percent for s in mine]
        print(
            f"| {role} | {len(mine)} | {statistics.mean(cpus):.2f}% "
            f"({min(cpus):.2f}-{max(cpus):.2f}%) | "
            f"{statistics.mean(s.rss_mb for s in mine):.1f} MB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,32", help="comma-separated cluster sizes")
    parser.add_argument("--window", type=float, default=40.0, help="idle window (seconds)")
    args = parser.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"murmur-idle-{n}-") as tmp:
            print(f"N={n}: starting...", flush=True)
            samples = bench_size(n, args.window, Path(tmp))
            results.append((n, samples))
            report(n, samples)
    print("\nAll sizes:")
    for n, samples in results:
        report(n, samples)


if __name__ == "__main__":
    main()
