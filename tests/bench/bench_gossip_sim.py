"""Gossip membership on the deterministic simulator: failure detection, join spread,
traffic, false deaths under CPU stalls, and a join's convergence curve at N=1000.

Run with ``python -m tests.bench.bench_gossip_sim [--quick] [--plot PATH]``.

Everything runs in simulated time on :class:`murmur.node.gossip.Simulation`, so figures are
protocol figures: they leave out CPU and gRPC costs, which the real-cluster
benchmarks measure. Link: loopback-like, 0.3 ms one way plus an exponential jitter
of mean 0.2 ms (about the 0.57 ms p50 / 1 ms p99 gRPC mTLS round trip measured on
the project's machines), no loss. Profiles compared:

- ``murmur``: :class:`GossipConfig` defaults (memberlist's DefaultLANConfig timings
  plus Murmur's eager push, last-chance suspicion check, refused-connection fast
  path, confirmation probes and a short confirmed suspicion), measured twice: a
  killed process (its host refuses connections, as for ``kill -9`` on loopback)
  and a lost host (silence);
- ``memberlist``: the same timings with those additions off (the anchor's
  protocol: ``suspicion_min_mult`` 4, no confirmation probes);
- ``fast-probe``: probe 0.5 s / timeout 0.25 s / gossip 0.1 s, host lost, to show
  what a shorter suspicion buys in detection time and costs in false deaths.

``--plot PATH`` writes the N=1000 join curve as CSV (``time_s,fraction_<profile>...``),
or as a PNG when PATH ends in ``.png`` and matplotlib is installed.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from murmur.node.gossip import EventKind, GossipConfig, Simulation

PROFILES: dict[str, GossipConfig] = {
    "murmur": GossipConfig(),
    "memberlist": GossipConfig(
        eager_push=False,
        suspicion_check_lead=0.0,
        refused_suspicion_timeout=0.0,
        suspicion_min_mult=4.0,
        confirmation_probes=0,
    ),
    "fast-probe": GossipConfig(probe_interval=0.5, probe_timeout=0.25, gossip_interval=0.1),
}

CASES: list[tuple[str, str, bool]] = [
    # (label, profile, a crashed node's host refuses connections)
    ("murmur, process killed", "murmur", True),
    ("murmur, host lost", "murmur", False),
    ("memberlist, host lost", "memberlist", False),
    ("fast-probe, host lost", "fast-probe", False),
]

CRASH_TARGETS = {32: "p50 ≤ 4 s, p99 ≤ 8 s (Serf 8.5 s)", 100: "p50 ≤ 6 s", 1000: "—"}
JOIN_TARGETS = {32: "≤ 0.3 s (Serf 0.51 s)", 100: "≤ 1 s", 1000: "Serf model 0.8-1.0 s"}


@dataclass
class Result:
    n: int
    profile: str
    crash_delays: list[float] = field(default_factory=list)
    undetected: int = 0
    join_delays: list[float] = field(default_factory=list)
    unjoined: int = 0
    idle_messages: float = 0.0
    idle_bytes: float = 0.0
    false_dead_stalls: int | None = None
    stall_minutes: float = 0.0
    wall_s: float = 0.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def measure(
    n: int, case: tuple[str, str, bool], *, crashes: int, joins: int, idle_s: float, seed: int
) -> Result:
    """Idle traffic, then crashes one after another, then joins, on one cluster."""
    started = time.perf_counter()
    label, profile, refuse = case
    result = Result(n, label)
    sim = Simulation(n, PROFILES[profile], seed=seed, refuse_when_down=refuse)
    rng = random.Random(seed)
    sim.run_until(5)
    sim.reset_traffic()
    sim.run_for(idle_s)
    traffic = sim.traffic()
    result.idle_messages = traffic.messages_per_node_second
    result.idle_bytes = traffic.bytes_per_node_second
    sim.measure_bytes = False

    for _ in range(crashes):
        victim = rng.choice(sim.running())
        crashed_at = sim.now
        sim.crash(victim)
        seen = None
        while seen is None and sim.now - crashed_at < 180:
            sim.run_for(1)
            seen = sim.seen_by_all_at(victim, EventKind.DEAD, since=crashed_at)
        if seen is None:
            result.undetected += 1
        else:
            result.crash_delays.append(seen - crashed_at)
        sim.run_for(rng.uniform(1, 3))

    for _ in range(joins):
        joined_at = sim.now
        newcomer = sim.add_node()
        informed = None
        while informed is None and sim.now - joined_at < 60:
            sim.run_for(0.25)
            informed = sim.time_to_inform(newcomer, since=joined_at)
        if informed is None:
            result.unjoined += 1
        else:
            result.join_delays.append(informed)
        sim.run_for(rng.uniform(1, 3))
    result.wall_s = time.perf_counter() - started
    return result


def stall_false_deaths(n: int, profile: str, *, minutes: float, seed: int) -> int:
    """10% of nodes stall 2-5 s, run 5-20 s, stall again...; DEAD verdicts about them."""
    sim = Simulation(n, PROFILES[profile], seed=seed, measure_bytes=False)
    rng = random.Random(seed)
    stallers = rng.sample(sim.names(), max(1, n // 10))
    next_stall = {name: rng.uniform(0, 10) for name in stallers}
    until = minutes * 60
    while True:
        name = min(next_stall, key=next_stall.__getitem__)
        if next_stall[name] >= until:
            break
        sim.run_until(next_stall[name])
        seconds = rng.uniform(2, 5)
        sim.stall(name, seconds)
        next_stall[name] = sim.now + seconds + rng.uniform(5, 20)
    sim.run_until(until)
    return len(sim.false_dead_verdicts())


def join_curve(profile: str, *, n: int, seed: int) -> list[float]:
    """Delays at which each node of an n-node cluster learned of one join."""
    sim = Simulation(n, PROFILES[profile], seed=seed, measure_bytes=False)
    sim.run_until(5)
    joined_at = sim.now
    newcomer = sim.add_node()
    sim.run_for(10)
    return sim.informed_times(newcomer, since=joined_at)


def fraction_at(times: list[float], total: int, at: float) -> float:
    return sum(1 for t in times if t <= at) / total


def ascii_plot(
    curves: dict[str, list[float]], total: int, width: int = 64, height: int = 16
) -> str:
    """Fraction of nodes informed against time; one letter per profile."""
    horizon = max((max(times) for times in curves.values() if times), default=1.0)
    horizon = max(horizon, 1e-3)
    grid = [[" "] * width for _ in range(height)]
    legend = []
    for (profile, times), mark in zip(curves.items(), "MLF", strict=False):
        legend.append(f"{mark} = {profile}")
        for column in range(width):
            at = horizon * (column + 1) / width
            row = height - 1 - min(height - 1, int(fraction_at(times, total, at) * (height - 1)))
            if grid[row][column] == " ":
                grid[row][column] = mark
    lines = [
        f"{'1.0' if i == 0 else ('0.0' if i == height - 1 else ''):>4}|{''.join(r)}"
        for i, r in enumerate(grid)
    ]
    lines.append("    +" + "-" * width)
    lines.append(f"     0 s{' ' * (width - 14)}{horizon:.3f} s")
    lines.append("     " + ", ".join(legend))
    return "\n".join(lines)


def write_plot(path: Path, curves: dict[str, list[float]], total: int) -> None:
    horizon = max(max(times) for times in curves.values() if times)
    steps = 200
    points = [horizon * i / steps for i in range(steps + 1)]
    if path.suffix == ".png":
        try:
            import matplotlib  # type: ignore[import-not-found]

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # type: ignore[import-not-found]
        except ImportError:
            path = path.with_suffix(".csv")
            print(f"matplotlib is not installed: writing CSV to {path}", file=sys.stderr)
        else:
            figure, axes = plt.subplots(figsize=(7, 4))
            for profile, times in curves.items():
                axes.plot(points, [fraction_at(times, total, t) for t in points], label=profile)
            axes.set_xlabel("seconds after join")
            axes.set_ylabel(f"fraction of {total} nodes informed")
            axes.legend()
            figure.savefig(path, dpi=120, bbox_inches="tight")
            return
    rows = ["time_s," + ",".join(f"fraction_{p}" for p in curves)]
    for t in points:
        rows.append(
            f"{t:.6f}," + ",".join(f"{fraction_at(c, total, t):.4f}" for c in curves.values())
        )
    path.write_text("\n".join(rows) + "\n")


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--plot", type=Path, help="write the N=1000 join curve here (CSV, or PNG)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    sizes = (32, 100, 1000)
    samples = {32: (12, 12), 100: (12, 12), 1000: (5, 5)}
    if args.quick:
        samples = {32: (4, 4), 100: (4, 4), 1000: (2, 2)}
    stall_minutes = 2.0 if args.quick else 10.0
    idle_s = 10.0 if args.quick else 30.0

    results: list[Result] = []
    stall_counts: dict[tuple[int, str], int] = {}
    for n in sizes:
        crashes, joins = samples[n]
        for case in CASES:
            result = measure(n, case, crashes=crashes, joins=joins, idle_s=idle_s, seed=args.seed)
            profile = case[1]
            if n <= 100:
                if (n, profile) not in stall_counts:
                    stall_counts[(n, profile)] = stall_false_deaths(
                        n, profile, minutes=stall_minutes, seed=args.seed
                    )
                result.false_dead_stalls = stall_counts[(n, profile)]
                result.stall_minutes = stall_minutes
            results.append(result)
            print(f"  measured N={n} {case[0]} in {result.wall_s:.1f} s", file=sys.stderr)

    print("# gossip membership, simulated (protocol only; loopback-like link 0.3 ms + exp(0.2 ms))")
    print()
    print(
        "| N | profile, crash kind | crash → all see dead p50 | p99 | target "
        "| join → 99.9% p50 | max | target | idle msgs/node/s | idle bytes/node/s "
        "| false dead, 10% nodes stalling 2-5 s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        crash = r.crash_delays or [math.nan]
        join = r.join_delays or [math.nan]
        missed = f" ({r.undetected} undetected)" if r.undetected else ""
        unjoined = f" ({r.unjoined} not reached)" if r.unjoined else ""
        stalls = (
            "—"
            if r.false_dead_stalls is None
            else f"{r.false_dead_stalls} in {r.stall_minutes:g} min (target 0)"
        )
        print(
            f"| {r.n} | {r.profile} | {seconds(statistics.median(crash))}{missed} "
            f"| {seconds(percentile(crash, 0.99))} | {CRASH_TARGETS[r.n]} "
            f"| {seconds(statistics.median(join))}{unjoined} | {seconds(max(join))} "
            f"| {JOIN_TARGETS[r.n]} | {r.idle_messages:.2f} | {r.idle_bytes:.0f} | {stalls} |"
        )
    print()
    print(
        f"Samples: crashes/joins per cell {', '.join(f'N={n}: {samples[n][0]}' for n in sizes)}; "
        f"seed {args.seed}."
    )

    curve_n = 1000
    curves = {
        profile: join_curve(profile, n=curve_n, seed=args.seed)
        for profile in ("murmur", "memberlist")
    }
    print()
    print(f"## Join at N={curve_n}: fraction of nodes informed vs time")
    print()
    print("```")
    print(ascii_plot(curves, curve_n))
    print("```")
    for profile, times in curves.items():
        marks = ", ".join(
            f"{int(f * 100 * 10) / 10:g}%: {seconds(times[max(0, math.ceil(f * curve_n) - 1)])}"
            for f in (0.5, 0.9, 0.99, 0.999)
            if len(times) >= math.ceil(f * curve_n)
        )
        print(f"- {profile}: {marks}")
    if args.plot is not None:
        write_plot(args.plot, curves, curve_n)
        print(f"\nCurve written to {args.plot}")


if __name__ == "__main__":
    main()
