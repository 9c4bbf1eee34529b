"""What the Cluster view says about one node, computed from its NodeInfo alone.

Averages and maxima skip GPUs that reported nothing, and a node whose GPUs report
nothing at all (simulated, or NVML without the value) gets None, shown as `—`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from murmur.v1 import types_pb2


@dataclass(frozen=True)
class NodeSummary:
    gpus_total: int
    gpus_used: int
    utilization: float | None
    memory_used: int | None
    memory_total: int
    temperature_max: int | None
    simulated: bool
    models: str
    """`8xA100-80GB`, or `4xA100-80GB 2xT4-16GB` for a mixed node."""


def summarize(node: types_pb2.NodeInfo) -> NodeSummary:
    devices = list(node.gpus.devices)
    stats = list(node.load.gpu_stats)
    utils = [s.utilization_percent for s in stats if s.HasField("utilization_percent")]
    memories = [s.memory_used_bytes for s in stats if s.HasField("memory_used_bytes")]
    temps = [s.temperature_celsius for s in stats if s.HasField("temperature_celsius")]
    total = len(devices)
    counts = Counter(_short_model(device.model) for device in devices)
    return NodeSummary(
        gpus_total=total,
        gpus_used=max(0, total - node.load.gpus_free),
        utilization=sum(utils) / len(utils) if utils else None,
        memory_used=sum(memories) if memories else None,
        memory_total=sum(device.memory_total_bytes for device in devices),
        temperature_max=max(temps) if temps else None,
        simulated=node.gpus.source == types_pb2.GPU_SOURCE_SIMULATED
        or any(device.simulated for device in devices),
        models=" ".join(f"{count}x{model}" for model, count in counts.items())
        or (node.gpus.reason or "no GPUs"),
    )


def _short_model(model: str) -> str:
    """`NVIDIA A100-SXM4-80GB` → `A100-SXM4-80GB`: the vendor is the same on every row."""
    return model.removeprefix("NVIDIA ").strip() or "GPU"
