"""Node view: one node's facts, and per GPU its recent utilization and memory as
sparklines plus the job (and user) holding it."""

from __future__ import annotations

from typing import ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from murmur.tui.format import (
    MISSING,
    NODE_STATE_STYLES,
    human_bytes,
    node_state_name,
    percent,
    sparkline,
)
from murmur.tui.node_summary import summarize
from murmur.tui.screens.base import ViewScreen
from murmur.tui.state import ClusterState
from murmur.v1 import types_pb2

SPARK_WIDTH = 24
GPU_COLUMNS = (
    "GPU",
    "MODEL",
    "UTIL (last minutes)",
    "MEMORY USED (last minutes)",
    "TEMP",
    "HELD BY",
)


class NodeScreen(ViewScreen):
    VIEW_NAME = "node"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("d", "drain", "Drain")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.node_name = name

    def title_text(self) -> str:
        return f"node {self.node_name}"

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="node-body"):
            yield Static(id="node-facts")
            yield Static(id="node-gpus")

    def focus_body(self) -> None:
        self.query_one("#node-body").focus()

    def update_body(self, *, changed: bool) -> None:
        node = self.top.state.nodes.get(self.node_name)
        facts, gpus = self.query_one("#node-facts", Static), self.query_one("#node-gpus", Static)
        if node is None:
            facts.update(Text(f"No node named {self.node_name} is known (yet).", style="yellow"))
            gpus.update("")
            return
        facts.update(node_facts(node))
        gpus.update(gpu_table(node, self.top.state))

    def action_drain(self) -> None:
        self.top.confirm_drain(self.node_name)


def node_facts(node: types_pb2.NodeInfo) -> RenderableType:
    summary = summarize(node)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    state = Text(node_state_name(node.state), style=NODE_STATE_STYLES.get(node.state, ""))
    if node.leader:
        state.append("  ★ leader", style="bold yellow")
    grid.add_row("state", state)
    grid.add_row("address", node.address)
    gpus = f"{summary.gpus_used}/{summary.gpus_total} in use · {summary.models}"
    grid.add_row("GPUs", gpus + (" (simulated)" if summary.simulated else ""))
    cpu = percent(node.load.cpu_percent if node.load.HasField("cpu_percent") else None)
    grid.add_row("CPU", f"{cpu} of {node.load.cpu_count} cores")
    memory_used = node.load.memory_used_bytes if node.load.HasField("memory_used_bytes") else None
    grid.add_row(
        "memory", f"{human_bytes(memory_used)} / {human_bytes(node.load.memory_total_bytes)}"
    )
    runtimes = ", ".join(node.runtimes) or MISSING
    grid.add_row("runtimes", runtimes + (f" ({node.runtime_notes})" if node.runtime_notes else ""))
    grid.add_row("jobs running", str(node.load.runs_active))
    if node.labels:
        grid.add_row("labels", " ".join(f"{k}={v}" for k, v in sorted(node.labels.items())))
    if node.datasets:
        grid.add_row("datasets", ", ".join(d.name for d in node.datasets))
    grid.add_row("version", f"{node.version}{' · holds the CA' if node.holds_ca else ''}")
    return grid


def gpu_table(node: types_pb2.NodeInfo, state: ClusterState) -> RenderableType:
    if not node.gpus.devices:
        return Text(f"No GPUs: {node.gpus.reason or 'none found'}", style="dim")
    table = Table(
        title="GPUs", expand=True, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD
    )
    for title in GPU_COLUMNS:
        table.add_column(title, no_wrap=True)
    stats = {s.index: s for s in node.load.gpu_stats}
    for device in node.gpus.devices:
        sample = stats.get(device.index)
        history = state.history.of(node.name, device.index)
        util = (
            sample.utilization_percent
            if sample is not None and sample.HasField("utilization_percent")
            else None
        )
        used = (
            sample.memory_used_bytes
            if sample is not None and sample.HasField("memory_used_bytes")
            else None
        )
        temp = (
            f"{sample.temperature_celsius}°C"
            if sample is not None and sample.HasField("temperature_celsius")
            else MISSING
        )
        holder = state.holder(node.name, device.index)
        held = Text("free", style="dim")
        if holder is not None:
            name = f" · {holder.job_name}" if holder.job_name else ""
            held = Text(f"{holder.job_id} · {holder.user}{name}", style="green")
        model = Text(device.model)
        if device.simulated:
            model.append(" (simulated)", style="italic magenta")
        table.add_row(
            str(device.index),
            model,
            f"{sparkline(history.utilization, SPARK_WIDTH)} {percent(util)}",
            f"{sparkline(history.memory_percent, SPARK_WIDTH)} {human_bytes(used)}",
            temp,
            held,
        )
    notes: list[RenderableType] = [table]
    if not any(_has_telemetry(s) for s in node.load.gpu_stats):
        why = "simulated GPUs report none" if summarize(node).simulated else "none reported yet"
        notes.append(Text(f"no telemetry: {why}", style="dim italic"))
    return Group(*notes)


def _has_telemetry(stats: types_pb2.GpuStats) -> bool:
    """Whether a GPU reported anything: simulated ones send samples with every value absent."""
    return (
        stats.HasField("utilization_percent")
        or stats.HasField("memory_used_bytes")
        or stats.HasField("temperature_celsius")
    )
