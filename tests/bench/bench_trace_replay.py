"""Trace replay: the Alibaba GPU trace through Murmur's scheduler and two references.

Run with ``python -m tests.bench.bench_trace_replay [--sizes 8,32,128] [--load 1.1]
[--plot docs/img/trace-replay.png]``.

The trace's jobs (``tests.bench.trace_jobs``: the pods that ran in its 35 busy days,
whole GPUs, co-created pods as gangs, derived users and groups, run times capped at
``--max-hours``) are replayed on clusters of 8, 32 and 128 of the trace's 8-GPU
nodes (sampled with ``--seed``). For each size, the same jobs (or a seeded
``--fraction`` of them) arrive in their trace order with their trace spacing,
compressed so that the offered load (GPU-seconds asked over GPU-seconds the cluster
offers between the first and the last arrival) is ``--load``. Each replay is a
discrete-event simulation in virtual time (``tests.bench.trace_sim``) of one
scheduler (``tests.bench.trace_policies``): Murmur's ``scheduler`` package under
``DEFAULT_POLICY`` driven as the leader drives it, strict FIFO first-fit, and FIFO +
EASY backfill with exact time limits. Figures: ``tests.bench.trace_metrics``;
with ``--plot PATH``, also a PNG of every replay (``tests.bench.trace_plot``: needs
matplotlib, ``pip install 'murmur-cluster[bench]'``).
Deterministic: the same arguments print the same table (but for wall times).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from murmur import scheduler
from tests.bench.trace_jobs import (
    NODES_FILE,
    PODS_FILE,
    TRACE_DIR,
    US,
    jobs_of,
    read_nodes,
    read_pods,
    sample_jobs,
    sample_nodes,
    scaled_to_load,
)
from tests.bench.trace_metrics import ReplaySummary, markdown_table, summarize
from tests.bench.trace_plot import plot_replays, require_matplotlib
from tests.bench.trace_policies import EasyBackfill, FifoFirstFit, MurmurScheduler
from tests.bench.trace_sim import ReplayResult, ReplayScheduler, replay

SCHEDULERS: dict[str, Callable[[argparse.Namespace], ReplayScheduler]] = {
    "murmur": lambda args: MurmurScheduler(time_limits=args.easy_estimate),
    "murmur-nolimits": lambda args: MurmurScheduler(name="murmur, jobs without time limits"),
    "murmur-fifo": lambda args: MurmurScheduler(
        policy=scheduler.FIFO_FIRST_FIT_POLICY, name="murmur FIFO_FIRST_FIT_POLICY"
    ),
    "fifo": lambda args: FifoFirstFit(),
    "easy": lambda args: EasyBackfill(estimate=args.easy_estimate),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,128", help="cluster sizes, in 8-GPU nodes")
    parser.add_argument("--load", type=float, default=1.1, help="offered load (1.0: capacity)")
    parser.add_argument("--max-hours", type=float, default=12.0, help="run time cap, hours")
    parser.add_argument(
        "--jobs-per-gpu", type=float, default=40.0, help="jobs replayed per GPU of the cluster"
    )
    parser.add_argument("--groups", type=int, default=12, help="derived groups")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--schedulers",
        default="murmur,fifo,easy",
        help=f"comma-separated, of: {', '.join(SCHEDULERS)}",
    )
    parser.add_argument(
        "--easy-estimate",
        type=float,
        default=1.0,
        help="time limit = run time x this (EASY's, and Murmur's jobs')",
    )
    parser.add_argument("--trace-dir", type=Path, default=TRACE_DIR)
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help="also draw every replay to this PNG file (needs matplotlib: the bench extra)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ReplaySummary]:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    names = args.schedulers.split(",")
    unknown = [name for name in names if name not in SCHEDULERS]
    if unknown:
        raise SystemExit(f"unknown schedulers {unknown}; known: {list(SCHEDULERS)}")
    if args.plot is not None:
        require_matplotlib()
    pods = read_pods(args.trace_dir / PODS_FILE)
    trace_nodes = read_nodes(args.trace_dir / NODES_FILE)
    trace_jobs = jobs_of(pods, max_seconds=args.max_hours * 3600, groups=args.groups)
    gangs = sum(1 for job in trace_jobs if job.nodes > 1)
    gpu_jobs = sum(1 for job in trace_jobs if job.gpus)
    users = len({job.user for job in trace_jobs})
    setting = (
        f"{args.max_hours:g} h run time cap, {args.jobs_per_gpu:g} jobs per GPU, offered load "
        f"{args.load:g}, seed {args.seed}"
    )
    print(
        f"trace {args.trace_dir.name}: {len(pods)} pods that ran -> {len(trace_jobs)} jobs "
        f"({gpu_jobs} ask GPUs, {gangs} gangs, {users} users in "
        f"{len({job.group for job in trace_jobs})} groups); run times capped at "
        f"{args.max_hours:g} h; {args.jobs_per_gpu:g} jobs per GPU; offered load "
        f"{args.load:g}; seed {args.seed}"
    )
    summaries = []
    results: list[ReplayResult] = []
    for size in sizes:
        nodes = sample_nodes(trace_nodes, size, args.seed + size)
        gpus = sum(node.gpus for node in nodes)
        jobs = sample_jobs(trace_jobs, round(args.jobs_per_gpu * gpus), args.seed)
        scaled = scaled_to_load(jobs, gpus, args.load)
        compression = jobs[-1].arrival_us / scaled[-1].arrival_us if scaled[-1].arrival_us else 1.0
        models = sorted({node.model for node in nodes})
        print(
            f"{size} nodes ({gpus} GPUs; {', '.join(models)}): {len(jobs)} jobs arriving over "
            f"{scaled[-1].arrival_us / US / 3600:.1f} h (trace time / {compression:.0f})",
            flush=True,
        )
        for name in names:
            result = replay(nodes, scaled, SCHEDULERS[name](args))
            summary = summarize(result)
            summaries.append(summary)
            if args.plot is not None:
                results.append(result)
            print(f"  {summary.scheduler}: {replay_notes(result, summary)}", flush=True)
    print()
    print(markdown_table(summaries))
    if args.plot is not None:
        plot_replays(
            results,
            args.plot,
            title=f"Alibaba GPU trace v2023 replayed in virtual time ({setting})",
        )
        print(f"\nplot: {args.plot}")
    return summaries


def mean_minutes(values: list[int]) -> str:
    """The mean of microsecond ``values`` in minutes, or "-" for none."""
    return f"{sum(values) / len(values) / US / 60:.1f} min" if values else "-"


def replay_notes(result: ReplayResult, summary: ReplaySummary) -> str:
    """What the table does not show: passes, wall time, the end; the queueing delay
    of gangs, of 1-GPU jobs and of jobs of 4 GPUs or more, and the share started at
    once; how long and how well the drain after the last arrival was saturated."""
    delays = [(run.start - run.job.arrival_us, run.job) for run in result.runs]
    gangs = [delay for delay, job in delays if job.nodes > 1]
    narrow = [delay for delay, job in delays if job.gpu_ranks == 1]
    wide = [delay for delay, job in delays if job.gpu_ranks >= 4]
    at_once = sum(1 for delay, _ in delays if delay == 0) / len(delays) if delays else 0.0
    return (
        f"{result.passes} passes, {summary.wall_seconds:.1f} s, ended at "
        f"{result.end_time / US / 3600:.1f} h; mean queueing delay of the {len(gangs)} gangs "
        f"{mean_minutes(gangs)}, of the {len(narrow)} 1-GPU jobs {mean_minutes(narrow)}, of "
        f"the {len(wide)} jobs of 4 GPUs or more {mean_minutes(wide)}; {at_once:.0%} started "
        f"at once; saturated {summary.saturated_after_window:.1f} h after the last arrival "
        f"(whole replay at saturation: {summary.allocation_saturated_whole:.1%} allocated, "
        f"{summary.idle_too_few_gpus_whole:.1%} free on nodes with too few GPUs for any "
        "waiting job)"
    )


if __name__ == "__main__":
    main()
