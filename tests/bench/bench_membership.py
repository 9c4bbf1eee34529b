"""Gossip membership on real clusters: separate ``murmur node start`` processes on
127.0.0.x, mutual TLS, production gossip timings.

Run with ``python -m tests.bench.bench_membership [--sizes 10,50,100] [--crashes K]``.

For each cluster size N it starts N nodes (certificates straight from a lab CA,
each node seeded with node-1 and two earlier nodes), waits until sampled nodes see
all N alive, then measures:

- idle cost over a quiet window: CPU per node (utime+stime from /proc, as % of one
  core) and loopback bytes per second per node (``lo`` transmit counter of
  /proc/net/dev; all of it is node traffic, TLS included, since nothing else runs);
- crash detection: ``kill -9`` of a random node, K times; for each survivor, the
  time from the kill to the ``membership.dead`` line about the victim in that
  survivor's log (log times are wall clock with milliseconds). Reported per
  observer (p50, p99) and per crash (time until every survivor knew);
- join spread: one more node starts; for each member, the time from the joiner's
  ``node.ready`` to that member's ``membership.joined`` line about it.

The machine has 2 cores: at N=100 the nodes share them 50 to a core, so the
figures include CPU contention a real lab (one node per server) would not have.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from murmur import AsyncClient, MurmurError, resolve_connect_config
from murmur.certs import Role
from murmur.v1 import types_pb2
from tests.support.cluster import host_of, provision_node
from tests.support.nodes import Lab, NodeProcess, create_lab

CONVERGE_TIMEOUT = 300.0
EVENT_TIMEOUT = 90.0
IDLE_WINDOW = 20.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class SizeResult:
    n: int
    start_seconds: float
    converge_seconds: float
    cpu_percent_per_node: float
    bytes_per_second_per_node: float
    rss_mb_per_node: float
    crash_observer_seconds: list[float] = field(default_factory=list)
    crash_all_seconds: list[float] = field(default_factory=list)
    join_seconds: list[float] = field(default_factory=list)


class LogReader:
    """Reads each node's JSON log lines incrementally."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}

    def new_records(self, node: NodeProcess) -> list[dict[str, object]]:
        path = node.log_path
        offset = self._offsets.get(path, node.log_offset)
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offsets[path] = offset + end
        records = []
        for line in data[:end].splitlines():
            if line.startswith(b"{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        return records


def log_time(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["time"])).timestamp()


START_BATCH = 10
"""Nodes started at once: a Python daemon takes about a second of CPU to start, and
fifty starting together on two cores would starve the running ones."""


def start_nodes(
    lab: Lab,
    count: int,
    first_index: int,
    started: list[NodeProcess],
    env: dict[str, str] | None = None,
) -> None:
    rng = random.Random(first_index)
    batch: list[NodeProcess] = []
    for index in range(first_index, first_index + count):
        if len(batch) == START_BATCH:
            for node in batch:
                node.wait_ready(timeout=300)
            batch = []
        name = f"node-{index}"
        host = host_of(index)
        if index == 1:
            data_dir = lab.first_data_dir
            seeds: list[str] = []
        else:
            data_dir = provision_node(lab, name, host)
            earlier = [n.address for n in started[1:]]
            seeds = [started[0].address, *rng.sample(earlier, min(2, len(earlier)))]
        args = [arg for seed in seeds for arg in ("--seed", seed)]
        node = lab.start_node(
            name,
            data_dir=data_dir,
            host=host,
            extra_args=[*args, "--log-level", "info", "--simulate-gpus", "8xA100-80GB"],
            wait=False,
            env=env,
        )
        batch.append(node)
        if index == 1:
            node.wait_ready(timeout=120)
        started.append(node)
    for node in batch:
        node.wait_ready(timeout=300)


async def alive_seen(node: NodeProcess, identity: Path) -> set[str]:
    config = resolve_connect_config(node=node.address, identity=identity)
    try:
        async with AsyncClient(config) as client:
            nodes = await client.list_nodes(timeout=10)
    except MurmurError:
        return set()
    return {n.name for n in nodes if n.state == types_pb2.NODE_STATE_ALIVE}


async def wait_all_see(nodes: list[NodeProcess], identity: Path, sample: int = 5) -> float:
    """Seconds until node-1 and ``sample`` random nodes see every node alive."""
    names = {n.name for n in nodes}
    watchers = [nodes[0], *random.Random(7).sample(nodes[1:], min(sample, len(nodes) - 1))]
    started = time.monotonic()
    while time.monotonic() - started < CONVERGE_TIMEOUT:
        seen = [await alive_seen(w, identity) for w in watchers]
        if all(names <= s for s in seen):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{len(nodes)} nodes did not converge in {CONVERGE_TIMEOUT:.0f} s")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def loopback_tx_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    raise RuntimeError("no lo interface in /proc/net/dev")


def measure_idle(nodes: list[NodeProcess]) -> tuple[float, float, float]:
    """(CPU % of a core per node, bytes/s per node, RSS MB per node) over IDLE_WINDOW."""
    pids = [n.process.pid for n in nodes]
    ticks0, tx0, t0 = sum(cpu_ticks(p) for p in pids), loopback_tx_bytes(), time.monotonic()
    time.sleep(IDLE_WINDOW)
    ticks1, tx1, t1 = sum(cpu_ticks(p) for p in pids), loopback_tx_bytes(), time.monotonic()
    elapsed = t1 - t0
    cpu = (ticks1 - ticks0) / TICKS / elapsed / len(nodes) * 100
    rate = (tx1 - tx0) / elapsed / len(nodes)
    rss = statistics.mean(rss_bytes(p) for p in pids) / 2**20
    return cpu, rate, rss


def wait_for_events(
    reader: LogReader,
    observers: list[NodeProcess],
    event: str,
    peer: str,
    since: float,
) -> list[float]:
    """Per observer, seconds from ``since`` (wall clock) to its ``event`` about ``peer``."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + EVENT_TIMEOUT
    while len(found) < len(observers) and time.monotonic() < deadline:
        for node in observers:
            for record in reader.new_records(node):
                if record.get("event") == event and record.get("peer") == peer:
                    found.setdefault(node.name, log_time(record) - since)
        time.sleep(0.2)
    missing = [n.name for n in observers if n.name not in found]
    if missing:
        raise TimeoutError(f"{event} about {peer} never reached {missing[:5]}...")
    return sorted(found.values())


def ready_time(node: NodeProcess) -> float:
    for record in node.log_records():
        if record.get("event") == "node.ready":
            return log_time(record)
    raise RuntimeError(f"{node.name} logged no node.ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_size(n: int, crashes: int, root: Path, env: dict[str, str]) -> SizeResult:
    lab = create_lab(root)
    lab.issue_identity("bench", Role.ADMIN)
    nodes: list[NodeProcess] = []
    try:
        started = time.monotonic()
        start_nodes(lab, n, 1, nodes, env)
        start_seconds = time.monotonic() - started
        converge_seconds = asyncio.run(wait_all_see(nodes, lab.admin_identity))
        time.sleep(5)  # let the start-up's metadata broadcasts drain
        cpu, rate, rss = measure_idle(nodes)
        result = SizeResult(n, start_seconds, converge_seconds, cpu, rate, rss)

        reader = LogReader()
        for node in nodes:
            reader.new_records(node)  # skip what happened so far
        rng = random.Random(n)
        live = list(nodes)
        for _ in range(crashes):
            victim = rng.choice(live[1:])
            live.remove(victim)
            killed_at = time.time()
            victim.kill()
            times = wait_for_events(reader, live, "membership.dead", victim.name, killed_at)
            result.crash_observer_seconds += times
            result.crash_all_seconds.append(max(times))
            time.sleep(2)

        with_joiner = list(live)
        start_nodes(lab, 1, n + 1, with_joiner, env)
        joined = with_joiner[-1]
        result.join_seconds = wait_for_events(
            reader, live, "membership.joined", joined.name, ready_time(joined)
        )
        return result
    finally:
        lab.stop_all()


def report(results: list[SizeResult]) -> None:
    print()
    print("| N | start (s) | converged (s) | idle CPU/node | bytes/s/node | RSS/node |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.n} | {r.start_seconds:.1f} | {r.converge_seconds:.1f} | "
            f"{r.cpu_percent_per_node:.2f}% | {r.bytes_per_second_per_node:,.0f} | "
            f"{r.rss_mb_per_node:.0f} MB |"
        )
    print()
    print(
        "| N | crash → observer p50 / p99 (s) | crash → all know, per crash (s) "
        "| join → 50% / 99.9% (s) |"
    )
    print("| --- | --- | --- | --- |")
    for r in results:
        observer = r.crash_observer_seconds
        per_crash = ", ".join(f"{s:.2f}" for s in r.crash_all_seconds)
        print(
            f"| {r.n} | {percentile(observer, 0.5):.2f} / {percentile(observer, 0.99):.2f} "
            f"| {per_crash} | {percentile(r.join_seconds, 0.5):.2f} / "
            f"{percentile(r.join_seconds, 0.999):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50,100", help="comma-separated cluster sizes")
    parser.add_argument("--crashes", type=int, default=5, help="kill -9 trials per size")
    parser.add_argument(
        "--gossip",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a gossip setting for every node (MURMUR_GOSSIP_<FIELD>), e.g. probe_timeout=1.5",
    )
    args = parser.parse_args()
    env = {}
    for setting in args.gossip:
        field, _, value = setting.partition("=")
        env[f"MURMUR_GOSSIP_{field.upper()}"] = value
    if env:
        print(f"gossip settings: {env}")
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"murmur-bench-{n}-") as tmp:
            print(f"N={n}: starting...", flush=True)
            result = bench_size(n, args.crashes, Path(tmp), env)
            results.append(result)
            report([result])
    print("\nAll sizes:")
    report(results)


if __name__ == "__main__":
    main()
