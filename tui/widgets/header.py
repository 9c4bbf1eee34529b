"""The two header lines: where we are attached, as whom, and the cluster in numbers.

The second line turns into a warning when the connection moved or is lost, which is
how a failover to another node is announced.
"""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.widgets import Static

from murmur.tui.connection import Connection
from murmur.tui.format import GONE_NODE_STATES, job_state_name, node_state_name, role_name
from murmur.tui.node_summary import summarize
from murmur.tui.state import ClusterState
from murmur.v1 import types_pb2


class ConnectionBar(Static):
    # Two lines high, neither wrapping: a first line wrapped on a narrow terminal
    # pushed the cluster's numbers out of sight; a line too long is cut instead.
    DEFAULT_CSS = """
    ConnectionBar {
        height: 2; background: $boost; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def show(self, view: str, connection: Connection, state: ClusterState) -> None:
        self.update(header_text(view, connection, state))


def header_text(view: str, connection: Connection, state: ClusterState) -> Text:
    """Both header lines as one Text; pure, so it is checked without an app."""
    line = Text()
    line.append("murmur top", style="bold")
    line.append(f"  {view}", style="bold cyan")
    if connection.attached:
        line.append(f"  attached to {connection.node_name} at {connection.address}")
    else:
        line.append(f"  connecting to {connection.address}…", style="yellow")
    if connection.identity is not None:
        who = connection.identity
        line.append(f"  as {who.name} ({role_name(who.role)})")
    leader = state.leader()
    line.append(f"  leader {leader or '—'}", style="yellow" if leader else "dim")
    line.append("\n")
    if connection.notice:
        style = "bold yellow" if connection.attached else "bold red"
        line.append(connection.notice, style=style)
        return line
    line.append(_cluster_numbers(state))
    return line


def _cluster_numbers(state: ClusterState) -> str:
    nodes = Counter(node_state_name(node.state) for node in state.nodes.values())
    # GPUs of nodes that are up, as `murmur status` counts them.
    summaries = [
        summarize(node) for node in state.nodes.values() if node.state not in GONE_NODE_STATES
    ]
    total = sum(s.gpus_total for s in summaries)
    used = sum(s.gpus_used for s in summaries)
    simulated = " (simulated)" if any(s.simulated for s in summaries) else ""
    jobs = Counter(job.state for job in state.jobs.values())
    node_text = ", ".join(f"{count} {name}" for name, count in sorted(nodes.items()))
    job_text = ", ".join(
        f"{jobs[s]} {job_state_name(s)}"
        for s in (types_pb2.JOB_STATE_RUNNING, types_pb2.JOB_STATE_PENDING)
    )
    return (
        f"nodes {len(state.nodes)} ({node_text or 'none yet'})  "
        f"GPUs {used}/{total} in use{simulated}  jobs {len(state.jobs)} ({job_text})"
    )
