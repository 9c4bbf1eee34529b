"""Recent GPU telemetry per node and GPU, for the Node view's sparklines.

Bounded: each GPU keeps the last `capacity` samples (five minutes at the daemon's
2-second sampling by default), whatever the number of nodes or how long `top` runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from murmur.v1 import types_pb2

DEFAULT_CAPACITY = 150


@dataclass
class GpuHistory:
    utilization: deque[float | None]
    memory_percent: deque[float | None]


@dataclass
class TelemetryHistory:
    capacity: int = DEFAULT_CAPACITY
    _by_gpu: dict[tuple[str, int], GpuHistory] = field(default_factory=dict)
    _last_sample: dict[str, int] = field(default_factory=dict)

    def record(self, node: types_pb2.NodeInfo) -> None:
        """Adds the node's sample, once per measurement (a repeated NodeInfo is skipped)."""
        measured = node.load.measured_at.ToNanoseconds()
        if measured and self._last_sample.get(node.name) == measured:
            return
        self._last_sample[node.name] = measured
        totals = {device.index: device.memory_total_bytes for device in node.gpus.devices}
        for stats in node.load.gpu_stats:
            history = self._history(node.name, stats.index)
            util = (
                float(stats.utilization_percent) if stats.HasField("utilization_percent") else None
            )
            memory: float | None = None
            total = totals.get(stats.index, 0)
            if stats.HasField("memory_used_bytes") and total:
                memory = 100.0 * stats.memory_used_bytes / total
            history.utilization.append(util)
            history.memory_percent.append(memory)

    def of(self, node: str, index: int) -> GpuHistory:
        return self._by_gpu.get((node, index)) or GpuHistory(deque(), deque())

    def forget(self, node: str) -> None:
        self._last_sample.pop(node, None)
        for key in [key for key in self._by_gpu if key[0] == node]:
            del self._by_gpu[key]

    def _history(self, node: str, index: int) -> GpuHistory:
        key = (node, index)
        if key not in self._by_gpu:
            self._by_gpu[key] = GpuHistory(deque(maxlen=self.capacity), deque(maxlen=self.capacity))
        return self._by_gpu[key]
