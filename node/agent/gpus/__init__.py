"""This host's GPUs: static facts (inventory) apart from live telemetry.

Open one probe per node with ``open_gpu_probe(simulate=...)``; NVML stays inside
``murmur.node.agent.gpus.nvml``.
"""

from murmur.node.agent.gpus.errors import (
    GpuProbeClosedError,
    GpuProbeError,
    NvmlUnavailableError,
    SimulatedGpuSpecError,
)
from murmur.node.agent.gpus.model import GpuFacts, GpuInventory, GpuSource, GpuTelemetry
from murmur.node.agent.gpus.nvml import NvmlGpuProbe
from murmur.node.agent.gpus.probe import GpuProbe, NoGpuProbe, open_gpu_probe
from murmur.node.agent.gpus.simulated import (
    MAX_SIMULATED_GPUS,
    SimulatedGpuProbe,
    parse_simulated_spec,
)

__all__ = [
    "MAX_SIMULATED_GPUS",
    "GpuFacts",
    "GpuInventory",
    "GpuProbe",
    "GpuProbeClosedError",
    "GpuProbeError",
    "GpuSource",
    "GpuTelemetry",
    "NoGpuProbe",
    "NvmlGpuProbe",
    "NvmlUnavailableError",
    "SimulatedGpuProbe",
    "SimulatedGpuSpecError",
    "open_gpu_probe",
    "parse_simulated_spec",
]
