"""What a trace replay is judged by, from its ``ReplayResult``, and its Markdown table.

- allocation: GPUs held, time-averaged over the arrival window (first to last
  arrival), as a fraction of all GPUs; *at saturation*: the same over the instants
  of the arrival window when waiting jobs ask for at least as many GPUs as are
  free (see ``trace_sim``), and the GPUs free at those instants, by kind (kept
  free where a waiting rank fits, short of CPUs or memory, too few GPUs on the
  node), as fractions of the GPU time then: the four add up to 1. Also at
  saturation over the whole replay, the drain after the last arrival included.
- queueing delay: start minus arrival, over the jobs that ran; JCT: end minus
  arrival.
- fragmentation: see ``trace_sim`` (free GPUs stranded for the oldest waiting GPU
  job), time-averaged.
- Jain's index between groups of x_g = A_g / E_g, where A_g is the GPU-seconds group
  g held during the arrival window and E_g its max-min fair entitlement: the
  window's GPU-seconds shared by water-filling among the groups' demands (the
  GPU-seconds their jobs ask for). 1 when every group got the same fraction of its
  entitlement; 1/n when one group got everything.
- never ran: jobs still waiting when nothing is left to happen, and of those, the
  ones that would fit the empty cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tests.bench.trace_sim import ReplayResult


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """The figures of one replay (times in virtual minutes)."""

    scheduler: str
    nodes: int
    gpus: int
    jobs: int
    allocation: float
    allocation_saturated: float
    saturated_share: float
    """Of the arrival window, the share that was saturated."""
    idle_kept: float
    idle_cpu_memory: float
    idle_too_few_gpus: float
    allocation_saturated_whole: float
    """At saturation over the whole replay, the drain after the last arrival included."""
    idle_too_few_gpus_whole: float
    saturated_after_window: float
    """Saturated time after the last arrival, virtual hours."""
    delay_mean: float
    delay_p50: float
    delay_p95: float
    delay_p99: float
    jct_mean: float
    fragmentation: float
    jain: float
    never_ran: int
    never_ran_fitting: int
    wall_seconds: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ascending values (0 for none)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of ``values`` (1 for none or all zero)."""
    total = sum(values)
    squares = sum(value * value for value in values)
    if not values or squares == 0:
        return 1.0
    return total * total / (len(values) * squares)


def max_min_entitlements(demands: Mapping[str, float], capacity: float) -> dict[str, float]:
    """``capacity`` shared max-min fairly: no one gets more than it asks, and what
    one leaves is shared equally among those who want more (water-filling)."""
    left = capacity
    share: dict[str, float] = {}
    waiting = sorted(demands, key=lambda name: (demands[name], name))
    while waiting:
        level = left / len(waiting)
        name = waiting[0]
        if demands[name] <= level:
            share[name] = demands[name]
            left -= demands[name]
            waiting.pop(0)
        else:
            for name in waiting:
                share[name] = level
            break
    return share


def group_shares(result: ReplayResult) -> dict[str, float]:
    """Per group (that asks for GPUs), the GPU time it held during the arrival window
    over its max-min fair entitlement: 1 is its fair share."""
    demands: dict[str, float] = {}  # GPU-microseconds
    for job in result.jobs:
        if job.gpus:
            demands[job.group] = demands.get(job.group, 0) + job.gpu_ranks * job.duration_us
    capacity = result.gpus * result.tally.window_end
    if not demands or capacity <= 0:
        return {}
    entitled = max_min_entitlements(demands, capacity)
    held = result.tally.group_gpu_time
    return {group: held.get(group, 0.0) / entitled[group] for group in sorted(demands)}


def group_fairness(result: ReplayResult) -> float:
    """Jain's index between groups of held GPU time over entitlement."""
    return jain_index(list(group_shares(result).values()))


def summarize(result: ReplayResult) -> ReplaySummary:
    """The figures of ``result``."""
    tally = result.tally
    minutes = 60e6  # microseconds
    delays = sorted((run.start - run.job.arrival_us) / minutes for run in result.runs)
    jcts = [(run.end - run.job.arrival_us) / minutes for run in result.runs]
    fitting = sum(1 for job in result.never_ran if job.id not in result.unfit)
    window = tally.window_end * result.gpus
    saturated = tally.saturated_in_window * result.gpus
    saturated_whole = tally.saturated_time * result.gpus
    kept, cpu_memory, too_few = tally.idle_saturated_in_window
    return ReplaySummary(
        scheduler=result.scheduler,
        nodes=len(result.nodes),
        gpus=result.gpus,
        jobs=len(result.jobs),
        allocation=tally.allocated_in_window / window if window else 0.0,
        allocation_saturated=(
            tally.allocated_saturated_in_window / saturated if saturated else 0.0
        ),
        saturated_share=(tally.saturated_in_window / tally.window_end if tally.window_end else 0.0),
        idle_kept=kept / saturated if saturated else 0.0,
        idle_cpu_memory=cpu_memory / saturated if saturated else 0.0,
        idle_too_few_gpus=too_few / saturated if saturated else 0.0,
        allocation_saturated_whole=(
            tally.allocated_saturated / saturated_whole if saturated_whole else 0.0
        ),
        idle_too_few_gpus_whole=(
            tally.idle_saturated_too_few_gpus / saturated_whole if saturated_whole else 0.0
        ),
        saturated_after_window=(tally.saturated_time - tally.saturated_in_window) / 3600e6,
        delay_mean=sum(delays) / len(delays) if delays else 0.0,
        delay_p50=percentile(delays, 0.50),
        delay_p95=percentile(delays, 0.95),
        delay_p99=percentile(delays, 0.99),
        jct_mean=sum(jcts) / len(jcts) if jcts else 0.0,
        fragmentation=(
            tally.fragmented / tally.fragmentation_time if tally.fragmentation_time else 0.0
        ),
        jain=group_fairness(result),
        never_ran=len(result.never_ran),
        never_ran_fitting=fitting,
        wall_seconds=result.wall_seconds,
    )


HEADER = (
    "| nodes x GPUs | scheduler | GPUs allocated | at saturation (time saturated) "
    "| free at saturation: kept / CPU-memory / too few GPUs | at saturation, drain included "
    "| queueing delay mean / p50 / p95 / p99 (min) | mean JCT (min) | fragmentation "
    "| Jain (groups) | never ran (of them, fit the cluster) | replay wall time |"
)
RULE = "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"


def markdown_row(summary: ReplaySummary) -> str:
    """One line of the table."""
    return (
        f"| {summary.nodes} x {summary.gpus // max(1, summary.nodes)} | {summary.scheduler} "
        f"| {summary.allocation:.1%} "
        f"| {summary.allocation_saturated:.1%} ({summary.saturated_share:.0%}) "
        f"| {summary.idle_kept:.1%} / {summary.idle_cpu_memory:.1%} "
        f"/ {summary.idle_too_few_gpus:.1%} | {summary.allocation_saturated_whole:.1%} "
        f"| {summary.delay_mean:.1f} / {summary.delay_p50:.1f} / {summary.delay_p95:.1f} "
        f"/ {summary.delay_p99:.1f} | {summary.jct_mean:.1f} | {summary.fragmentation:.1%} "
        f"| {summary.jain:.3f} | {summary.never_ran} ({summary.never_ran_fitting}) "
        f"| {summary.wall_seconds:.1f} s |"
    )


def markdown_table(summaries: Sequence[ReplaySummary]) -> str:
    """The whole table."""
    return "\n".join([HEADER, RULE, *(markdown_row(summary) for summary in summaries)])
