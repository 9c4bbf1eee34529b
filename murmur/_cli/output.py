"""How the CLI prints: JSON that mirrors the proto messages, or aligned tables.

Results go to stdout; progress, notes and errors go to stderr, so scripts can
capture exactly the result (``JOB=$(murmur job submit ...)``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from murmur.v1 import types_pb2


def print_json(message: Message) -> None:
    """Protobuf JSON with the proto's snake_case field names, as scripts expect.

    Fields at their default value are printed too (``"index": 0``), so a script
    never has to know proto3's rule that zero values are omitted.
    """
    from google.protobuf import json_format

    print(
        json_format.MessageToJson(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            indent=2,
        )
    )


def print_record(message: Message, *, as_json: bool, text: Callable[[], object]) -> None:
    """How every command prints what it got: with ``--json`` (``as_json``) the message
    as `print_json` writes it, else ``text()`` prints it for people."""
    if as_json:
        print_json(message)
    else:
        text()


def note(text: str) -> None:
    print(text, file=sys.stderr)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def node_state_name(state: int) -> str:
    """``alive``, ``suspect``, ``dead``, ``left``, ``draining``; else ``unknown``."""
    from murmur.v1 import types_pb2

    if state == types_pb2.NODE_STATE_UNSPECIFIED or state not in types_pb2.NodeState.values():
        return "unknown"
    return types_pb2.NodeState.Name(state).removeprefix("NODE_STATE_").lower()  # type: ignore[arg-type]


def gpu_summary(node: types_pb2.NodeInfo) -> str:
    """``8/8 A100-80GB (simulated)``, or ``0 (NVML not found)``."""
    from murmur.v1 import types_pb2

    devices = node.gpus.devices
    if not devices:
        return f"0 ({node.gpus.reason})" if node.gpus.reason else "0"
    models = sorted({d.model for d in devices})
    text = f"{node.load.gpus_free}/{len(devices)} {','.join(models)}"
    if node.gpus.source == types_pb2.GPU_SOURCE_SIMULATED:
        text += " (simulated)"
    return text


def node_rows(nodes: Sequence[types_pb2.NodeInfo]) -> list[list[str]]:
    rows = []
    for node in nodes:
        role = "leader" if node.leader else ("voter" if node.voter else "")
        cpu = f"{node.load.cpu_percent:.0f}%" if node.load.HasField("cpu_percent") else "-"
        memory = (
            f"{human_bytes(node.load.memory_used_bytes)}/{human_bytes(node.load.memory_total_bytes)}"
            if node.load.HasField("memory_used_bytes")
            else "-"
        )
        rows.append(
            [
                node.name,
                node_state_name(node.state),
                role,
                node.address,
                gpu_summary(node),
                cpu,
                memory,
            ]
        )
    return rows


NODE_HEADERS = ("NAME", "STATE", "ROLE", "ADDRESS", "GPUS (free/total)", "CPU", "MEMORY")


def protocol_of(node: types_pb2.NodeInfo) -> int:
    """The control protocol level a node speaks: a version from before levels gossips
    none, and speaks level 1."""
    return max(node.protocol_level, 1)


def upgrade_lines(nodes: Sequence[types_pb2.NodeInfo], voters: Sequence[str]) -> list[str]:
    """What ``murmur status`` says of a rolling upgrade (docs/operations.md, "Upgrading
    a cluster"): each node that stopped applying the control log and must be upgraded,
    and, while the nodes run different versions, which runs what and what waits.
    Nothing when every node runs the same version. A node that left and does not vote
    is not counted (it is not coming back as it was)."""
    from murmur.v1 import types_pb2

    lines = [
        f"node {node.name} must be upgraded: it stopped applying the control log at "
        f"{node.upgrade_needed} (its jobs run on)"
        for node in nodes
        if node.upgrade_needed
    ]
    counted = [
        node for node in nodes if node.state != types_pb2.NODE_STATE_LEFT or node.name in voters
    ]
    by_version: dict[tuple[int, str], list[str]] = {}
    for node in counted:
        by_version.setdefault((protocol_of(node), node.version or "?"), []).append(node.name)
    if len(by_version) > 1:
        lowest = min(level for level, _ in by_version)
        runs = "; ".join(
            f"murmur {version} (protocol {level}) on {', '.join(sorted(names))}"
            for (level, version), names in sorted(by_version.items(), reverse=True)
        )
        lines.append(
            f"upgrade in progress: {runs}. Requests that need protocol {lowest + 1} or "
            "more are refused until every node runs it"
        )
    return lines
