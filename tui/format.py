"""Pure text formatting shared by every view: bars, sparklines, sizes, ages, names.

Kept free of Textual so the same functions serve the tables, the detail panes and
the unit tests, and so a row can be formatted without a running app.
"""

from __future__ import annotations

from collections.abc import Sequence

from murmur.v1 import types_pb2

_SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
MISSING = "—"
"""Shown where a value is unknown (absent telemetry), so unknown never reads as 0."""


def gpu_bar(used: int, total: int, width: int = 8) -> str:
    """`████░░░░ 4/8`: GPUs in use as a bar, then the count. No GPUs: an empty mark."""
    if total <= 0:
        return MISSING
    filled = round(width * min(used, total) / total)
    return "█" * filled + "░" * (width - filled) + f" {used}/{total}"


def sparkline(values: Sequence[float | None], width: int, top: float = 100.0) -> str:
    """The last `width` samples as block characters scaled to `top`; gaps stay blank.

    A missing sample (None) is a space, so a telemetry gap is visible as a gap. The
    line is only as long as the history, so a fresh dashboard shows a short line.
    """
    recent = list(values)[-width:]
    cells = []
    for value in recent:
        if value is None:
            cells.append(" ")
            continue
        level = 0 if top <= 0 else min(max(value / top, 0.0), 1.0)
        cells.append(_SPARK_BLOCKS[max(1, round(level * (len(_SPARK_BLOCKS) - 1)))])
    return "".join(cells)


def human_bytes(count: int | None) -> str:
    """1536 → `1.5 KiB`; binary units, as GPU memory is sold and reported."""
    if count is None:
        return MISSING
    value = float(count)
    for unit in _BYTE_UNITS:
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """A duration the way kubectl and k9s print ages: `45s`, `12m`, `3h4m`, `5d`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    return f"{hours // 24}d"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}%"


def job_state_name(state: types_pb2.JobState.ValueType) -> str:
    """`JOB_STATE_RUNNING` → `running`: the word users type in filters and read."""
    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def node_state_name(state: types_pb2.NodeState.ValueType) -> str:
    return types_pb2.NodeState.Name(state).removeprefix("NODE_STATE_").lower()


def role_name(role: types_pb2.Role.ValueType) -> str:
    return types_pb2.Role.Name(role).removeprefix("ROLE_").lower()


JOB_STATE_STYLES = {
    types_pb2.JOB_STATE_PENDING: "yellow",
    types_pb2.JOB_STATE_SCHEDULED: "cyan",
    types_pb2.JOB_STATE_STARTING: "cyan",
    types_pb2.JOB_STATE_RUNNING: "green",
    types_pb2.JOB_STATE_SUCCEEDED: "dim green",
    types_pb2.JOB_STATE_FAILED: "red",
    types_pb2.JOB_STATE_CANCELLED: "dim",
    types_pb2.JOB_STATE_LOST: "magenta",
}

NODE_STATE_STYLES = {
    types_pb2.NODE_STATE_ALIVE: "green",
    types_pb2.NODE_STATE_SUSPECT: "yellow",
    types_pb2.NODE_STATE_DEAD: "red",
    types_pb2.NODE_STATE_LEFT: "dim",
    types_pb2.NODE_STATE_DRAINING: "magenta",
}

GONE_NODE_STATES = frozenset({types_pb2.NODE_STATE_DEAD, types_pb2.NODE_STATE_LEFT})
"""States of a node that is gone: its GPUs count for nothing (as in ``murmur status``)."""

ACTIVE_JOB_STATES = frozenset(
    {
        types_pb2.JOB_STATE_SCHEDULED,
        types_pb2.JOB_STATE_STARTING,
        types_pb2.JOB_STATE_RUNNING,
    }
)
"""States in which a job holds GPUs on a node."""
