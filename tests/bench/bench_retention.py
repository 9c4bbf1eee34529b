"""Bounded control state: a million jobs through the real apply path, with retention.

``python -m tests.bench.bench_retention [--jobs N] [--jobs-per-day R]
[--retention-days D] [--checkpoints K] [--tracemalloc]``

A ``ControlState`` is fed ``N`` jobs the way a lab would (``R`` a day, one after
another: each submitted, placed on one of 100 nodes and reported succeeded, every
command encoded and applied as a voter applies a committed entry), while every 30
simulated seconds the leader's retention step runs: it asks the state which jobs
ended more than ``D`` days ago (``forgettable``) and applies the ``ForgetJobs`` it
would propose. At ``K`` checkpoints it prints the jobs held, the snapshot's size,
the process's RSS now and at its peak, and (``--tracemalloc``, about 2x slower)
the bytes Python has allocated, which is the state (the loop keeps nothing else).
``--retention-days 0`` keeps every job: the growth retention prevents.

Not part of ``make bench`` yet.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from pathlib import Path

from murmur.node.control.queue import (
    AssignJob,
    ControlState,
    ForgetJobs,
    ReportRun,
    SubmitJob,
    encode,
)
from murmur.node.control.queue.commands import MAX_FORGET_JOBS
from murmur.node.jobspec import states
from murmur.v1 import types_pb2

SECOND = 1_000_000
DAY = 86_400 * SECOND
FORGET_EVERY_US = 30 * SECOND
NODES = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job_spec(i: int) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name=f"train-{i % 50}",
        queue="default",
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=["python", "train.py", "--epochs", "10", f"--seed={i}"],
        env={"WANDB_PROJECT": "lab", "OMP_NUM_THREADS": "8"},
        gpus=types_pb2.GpuRequest(count=1),
        cpus=8,
        memory_bytes=64 << 30,
    )


class Feed:
    """Applies commands at increasing log indices of one term, as a voter would."""

    def __init__(self, state: ControlState) -> None:
        self.state = state
        self.index = 0
        self.forgotten = 0

    def apply(self, command: object) -> None:
        self.index += 1
        result = self.state.apply(1, self.index, encode(command))  # type: ignore[arg-type]
        if not result.ok:
            raise RuntimeError(f"entry {self.index} refused: {result.message}")
        self.forgotten += len(result.forgotten)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--jobs-per-day", type=int, default=10_000)
    parser.add_argument("--retention-days", type=float, default=7.0)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()

    if args.tracemalloc:
        tracemalloc.start()
    retention_us = int(args.retention_days * DAY)
    spacing_us = DAY // args.jobs_per_day
    every = max(1, args.jobs // args.checkpoints)
    feed = Feed(ControlState())
    next_forget = FORGET_EVERY_US
    began = time.perf_counter()
    print(
        f"{args.jobs:,} jobs, {args.jobs_per_day:,} a day, retention "
        f"{args.retention_days:g} days{' (none)' if not retention_us else ''}\n"
    )
    print("| jobs fed | sim. days | jobs held | snapshot | RSS now | RSS peak | traced | s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    snapshot_sizes: list[int] = []
    held: list[int] = []
    for i in range(args.jobs):
        at = (i + 1) * spacing_us
        job_id = f"{i:012x}"
        run_id = f"r{i:011x}"
        node = f"gpu{i % NODES}"
        feed.apply(SubmitJob(job_id, job_spec(i), f"user{i % 40}", f"~{job_id}", at))
        feed.apply(AssignJob(job_id, node, run_id, 1, (0,), at + SECOND))
        feed.apply(ReportRun(job_id, run_id, node, states.SUCCEEDED, 0, "", at + spacing_us // 2))
        while retention_us and at >= next_forget:
            due = feed.state.forgettable(next_forget, retention_us, MAX_FORGET_JOBS)
            if due:
                feed.apply(ForgetJobs(tuple(due), retention_us, next_forget))
            if len(due) < MAX_FORGET_JOBS:
                next_forget += FORGET_EVERY_US
        if (i + 1) % every == 0:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else 0.0
            rss = rss_mb()  # before the snapshot's own garbage
            snapshot = len(feed.state.snapshot())
            snapshot_sizes.append(snapshot)
            held.append(len(feed.state))
            print(
                f"| {i + 1:,} | {at / DAY:.0f} | {len(feed.state):,} | "
                f"{snapshot / 2**20:.1f} MiB | {rss:.0f} MB | {peak_rss_mb():.0f} MB | "
                + (f"{traced:.0f} MiB" if args.tracemalloc else "-")
                + f" | {time.perf_counter() - began:.0f} |",
                flush=True,
            )
    print()
    per_job = snapshot_sizes[-1] / max(1, held[-1])
    print(f"entries applied: {feed.index:,}; jobs forgotten: {feed.forgotten:,}")
    print(f"snapshot bytes per job held: {per_job:.0f}")
    if retention_us:
        bound = args.jobs_per_day * args.retention_days
        print(
            f"held at most {max(held):,} jobs (bound: {args.jobs_per_day:,} a day x "
            f"{args.retention_days:g} days = {bound:,.0f}, plus those not yet ended)"
        )


if __name__ == "__main__":
    main()
