"""This host's GPUs: static facts (inventory) apart from live telemetry.

Open one probe per node with ``open_gpu_probe(simulate=...)``; NVML stays inside
``node.gpus.nvml``.
"""

from node.gpus.errors import (
    GpuProbeClosedError,
    GpuProbeError,
    NvmlUnavailableError,
    SimulatedGpuSpecError,
)
from node.gpus.model import GpuFacts, GpuInventory, GpuSource, GpuTelemetry
from node.gpus.nvml import NvmlGpuProbe
from node.gpus.probe import GpuProbe, NoGpuProbe, open_gpu_probe
from node.gpus.simulated import MAX_SIMULATED_GPUS, SimulatedGpuProbe, parse_simulated_spec

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
