"""The trace replay as a picture: one PNG, a row per cluster size, a line per scheduler.

Columns, left to right:

- queueing delay, as a CDF over the jobs that ran (start minus arrival; the x axis
  is linear below one minute and logarithmic above, so the jobs that started at
  once show at 0);
- GPUs allocated over virtual time, averaged over ``BIN_MINUTES`` bins, as a
  fraction of all GPUs, with the last arrival marked (the figure in the table
  averages the same up to that mark);
- each group's GPU time over its max-min fair entitlement during the arrival window
  (``trace_metrics.group_shares``; 1 is its fair share), with Jain's index between
  groups in the legend.

The series are computed here without matplotlib; only ``plot_replays`` needs it,
and imports it when called (``pip install 'murmur-cluster[bench]'``), so neither the
tests nor ``make bench`` depend on it.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.bench.trace_jobs import US
from tests.bench.trace_metrics import ReplaySummary, group_shares, summarize
from tests.bench.trace_sim import ReplayResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

BIN_MINUTES = 15
DPI = 100
PALETTE_COLOURS = 64
COLORS = ("#1b6ca8", "#c8553d", "#6a994e", "#8e5ea2", "#e0a100")
MATPLOTLIB_MISSING = (
    "--plot needs matplotlib, which is not installed: "
    "pip install 'murmur-cluster[bench]' (or pip install matplotlib)"
)


def require_matplotlib() -> None:
    """Raises SystemExit with how to install matplotlib when it is missing (before a
    replay runs for minutes and then cannot draw)."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # in sys.modules as None: made unimportable
        found = False
    if not found:
        raise SystemExit(MATPLOTLIB_MISSING)


def delay_cdf(result: ReplayResult) -> tuple[list[float], list[float]]:
    """Queueing delays of the jobs that ran, ascending (minutes), and the fraction of
    those jobs that waited at most each."""
    delays = sorted((run.start - run.job.arrival_us) / (60 * US) for run in result.runs)
    count = len(delays)
    return delays, [(rank + 1) / count for rank in range(count)]


def allocation_over_time(
    result: ReplayResult, bin_minutes: float = BIN_MINUTES
) -> tuple[list[float], list[float]]:
    """Bin ends (virtual hours) and the fraction of all GPUs held, averaged over each
    bin, from the first arrival to the last end."""
    bin_us = round(bin_minutes * 60 * US)
    if not result.runs or result.gpus <= 0 or bin_us <= 0:
        return [], []
    changes: dict[int, int] = {}
    for run in result.runs:
        gpus = run.job.gpu_ranks
        if gpus:
            changes[run.start] = changes.get(run.start, 0) + gpus
            changes[run.end] = changes.get(run.end, 0) - gpus
    bins = -(-result.end_time // bin_us) or 1
    held = [0.0] * bins  # GPU-microseconds per bin
    level, at = 0, 0
    for time in sorted(changes):
        _add_level(held, level, at, time, bin_us)
        level += changes[time]
        at = time
    _add_level(held, level, at, bins * bin_us, bin_us)
    hours = [(index + 1) * bin_us / (3600 * US) for index in range(bins)]
    return hours, [value / (bin_us * result.gpus) for value in held]


def _add_level(held: list[float], level: int, start: int, end: int, bin_us: int) -> None:
    """Adds ``level`` GPUs held from ``start`` to ``end`` to the bins they cover."""
    if not level:
        return
    while start < end:
        index = start // bin_us
        stop = min(end, (index + 1) * bin_us)
        held[index] += level * (stop - start)
        start = stop


def plot_replays(results: Sequence[ReplayResult], path: Path, *, title: str = "") -> None:
    """Draws ``results`` (any sizes and schedulers, in the order to show) to ``path``
    as a PNG: a row per cluster size, the columns of the module docstring.

    Raises:
        SystemExit: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure  # an optional dependency: imported here
    from PIL import Image  # one of matplotlib's own dependencies

    sizes = sorted({len(result.nodes) for result in results})
    names = list(dict.fromkeys(result.scheduler for result in results))
    colors = {name: COLORS[index % len(COLORS)] for index, name in enumerate(names)}
    figure = Figure(figsize=(15, 3.6 * len(sizes) + 0.8), layout="constrained")
    if title:
        figure.suptitle(title, fontsize=11)
    for row, axes in zip(sizes, figure.subplots(len(sizes), 3, squeeze=False), strict=True):
        shown = [result for result in results if len(result.nodes) == row]
        label = f"{row} nodes x {shown[0].gpus // row} GPUs"
        summaries = [summarize(result) for result in shown]
        _draw_delays(axes[0], shown, summaries, colors, label)
        _draw_allocation(axes[1], shown, summaries, colors, label)
        _draw_shares(axes[2], shown, summaries, colors, label)
    drawn = io.BytesIO()
    figure.savefig(drawn, format="png", dpi=DPI)
    drawn.seek(0)
    with Image.open(drawn) as image:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Flat colours: a palette makes the file about a third the size.
        flat = image.convert("RGB").quantize(colors=PALETTE_COLOURS)
        flat.save(path, format="PNG", optimize=True)


def _draw_delays(
    axis: Axes,
    shown: Sequence[ReplayResult],
    summaries: Sequence[ReplaySummary],
    colors: Mapping[str, str],
    label: str,
) -> None:
    longest = 1.0
    for result, summary in zip(shown, summaries, strict=True):
        delays, fractions = delay_cdf(result)
        longest = max(longest, *delays[-1:])
        axis.step(
            delays,
            fractions,
            where="post",
            color=colors[result.scheduler],
            linewidth=1.4,
            label=(
                f"{result.scheduler}: mean {summary.delay_mean:.0f}, "
                f"p95 {summary.delay_p95:.0f} min"
            ),
        )
    axis.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ticks = [0.0, *(10.0**power for power in range(len(str(int(longest))) + 1))]
    axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    axis.set_xlim(0, ticks[-1])
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("queueing delay (virtual minutes)")
    axis.set_ylabel("fraction of jobs")
    axis.set_title(f"{label}: queueing delay (CDF)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")


def _draw_allocation(
    axis: Axes,
    shown: Sequence[ReplayResult],
    summaries: Sequence[ReplaySummary],
    colors: Mapping[str, str],
    label: str,
) -> None:
    for result, summary in zip(shown, summaries, strict=True):
        hours, allocated = allocation_over_time(result)
        axis.plot(
            hours,
            allocated,
            color=colors[result.scheduler],
            linewidth=1.1,
            label=f"{result.scheduler}: {summary.allocation:.1%} to the last arrival",
        )
    last_arrival = shown[0].tally.window_end / (3600 * US)
    axis.axvline(last_arrival, color="0.4", linestyle="--", linewidth=0.8)
    axis.text(
        last_arrival, 0.6, "last arrival", color="0.3", fontsize=8, rotation=90,
        ha="right", va="center", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )  # fmt: skip
    axis.set_ylim(0, 1.02)
    axis.set_xlim(left=0)
    axis.set_xlabel(f"virtual hours ({BIN_MINUTES}-minute averages)")
    axis.set_ylabel("GPUs allocated")
    axis.yaxis.set_major_formatter("{x:.0%}")
    axis.set_title(f"{label}: GPUs allocated over time", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.06, 0.0))


def _draw_shares(
    axis: Axes,
    shown: Sequence[ReplayResult],
    summaries: Sequence[ReplaySummary],
    colors: Mapping[str, str],
    label: str,
) -> None:
    shares = [group_shares(result) for result in shown]
    groups = sorted({group for found in shares for group in found})
    width = 0.8 / len(shown)
    highest = 1.0
    for number, (result, summary, found) in enumerate(zip(shown, summaries, shares, strict=True)):
        offset = (number - (len(shown) - 1) / 2) * width
        heights = [found.get(group, 0.0) for group in groups]
        highest = max(highest, *heights)
        axis.bar(
            [index + offset for index in range(len(groups))],
            heights,
            width=width,
            color=colors[result.scheduler],
            label=f"{result.scheduler}: Jain {summary.jain:.3f}",
        )
    axis.axhline(1.0, color="0.4", linestyle="--", linewidth=0.8)
    axis.set_ylim(0, highest * 1.45)  # room for the legend above the bars
    axis.set_xticks(
        range(len(groups)), [group.removeprefix("group-") for group in groups], fontsize=8
    )
    axis.set_xlabel("group")
    axis.set_ylabel("GPU time / fair entitlement")
    axis.set_title(f"{label}: each group's share (1 = fair)", fontsize=10)
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize=8, loc="upper left", ncols=2)
