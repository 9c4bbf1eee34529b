"""Leader failover and commit latency on the deterministic Raft simulator.

Run with ``python -m tests.bench.bench_election_sim [--trials N] [--seed S]``.

Failover: each trial is a fresh seeded cluster of voters on
:class:`murmur.node.control.raft.RaftSimulation` with the default :class:`ElectionConfig`
(heartbeat 0.2 s, election timeout 0.45-0.8 s, lease 0.45 s): it elects a leader,
runs 0.5-1.5 s more, kills the leader, and times the first election that follows,
in simulated seconds. Targets (issue 6, end to end): p50 <= 1.0 s, p99 <= 2.0 s.

Commit: a settled cluster gets 100-byte commands at the leader at a steady rate;
latency is from ``propose`` to the leader applying the command, and throughput is
the rate it keeps up with. One AppendEntries per follower is in flight at a time,
and whatever was proposed meanwhile goes out as the next batch.

The figures are protocol figures: they leave out gRPC, SQLite and fsync (a real
node adds one fsync per batch on the leader and one on the followers), and the
scheduler. Link: loopback-like, 0.3 ms one way plus an exponential jitter of mean
0.2 ms, no loss.
"""

from __future__ import annotations

import argparse
import math
import time

from murmur.node.control.raft import ElectionConfig, commit_latencies, failover_times


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500, help="trials per cluster size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = ElectionConfig()
    print(
        f"election defaults: heartbeat {config.heartbeat_interval} s, timeout "
        f"{config.election_timeout_min}-{config.election_timeout_max} s, "
        f"lease {config.lease_timeout} s; {args.trials} trials, seed {args.seed}"
    )
    print("voters  p50_s   p90_s   p99_s   max_s   (kill leader -> new leader, simulated)")
    for voters in (3, 5):
        started = time.perf_counter()
        times = sorted(failover_times(args.trials, n_voters=voters, config=config, seed=args.seed))
        took = time.perf_counter() - started
        print(
            f"{voters:>6}  {percentile(times, 0.5):.3f}   {percentile(times, 0.9):.3f}   "
            f"{percentile(times, 0.99):.3f}   {times[-1]:.3f}   ({took:.1f} s of real time)"
        )
    print()
    print("voters  rate/s   committed  p50_ms  p99_ms   (propose -> leader commit, simulated)")
    for voters in (3, 5):
        for rate in (1_000.0, 50_000.0):
            commands = int(rate)  # one simulated second of load
            latencies = sorted(
                commit_latencies(commands, rate=rate, n_voters=voters, seed=args.seed)
            )
            print(
                f"{voters:>6}  {rate:>7.0f}  {len(latencies):>9}  "
                f"{1000 * percentile(latencies, 0.5):>6.2f}  "
                f"{1000 * percentile(latencies, 0.99):>6.2f}"
            )


if __name__ == "__main__":
    main()
