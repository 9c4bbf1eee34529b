"""Gossiped NodeInfo to what the placement step needs (node/control/leader/placement.py)."""

from __future__ import annotations

from murmur.node.control.leader.placement import GpuOffer, NodeOffer
from murmur.v1 import types_pb2

_UNSCHEDULABLE = {
    types_pb2.NODE_STATE_DRAINING: "draining",
    types_pb2.NODE_STATE_SUSPECT: "suspect",
    types_pb2.NODE_STATE_DEAD: "dead",
    types_pb2.NODE_STATE_LEFT: "left",
}


def offer_of(info: types_pb2.NodeInfo) -> NodeOffer:
    """A node's offer: every GPU it has (held or not: the control state knows what
    its runs hold), its CPUs and memory, and whether it takes new runs now."""
    reason = _UNSCHEDULABLE.get(info.state, "")
    if not reason and not info.runtimes:
        reason = "no runtime"
    return NodeOffer(
        name=info.name,
        gpus=tuple(gpu_offer_of(device) for device in info.gpus.devices),
        cpus=float(info.load.cpu_count or 1),
        memory_bytes=info.load.memory_total_bytes,
        runtimes=frozenset(info.runtimes),
        datasets=frozenset(dataset.name for dataset in info.datasets),
        schedulable=not reason,
        unschedulable_reason=reason,
        labels=dict(info.labels),
    )


def gpu_offer_of(device: types_pb2.GpuDevice) -> GpuOffer:
    """One gossiped GPU; an unset locality field is None (unknown), not group 0."""
    return GpuOffer(
        index=device.index,
        model=device.model,
        memory_bytes=device.memory_total_bytes,
        nvlink_group=device.nvlink_group if device.HasField("nvlink_group") else None,
        pcie_group=device.pcie_group if device.HasField("pcie_group") else None,
    )
