"""What the node knows about its GPUs, kept apart by how often it changes.

``GpuFacts`` are fingerprinted once when the probe opens (model, memory, UUID);
``GpuTelemetry`` is sampled again and again (utilization, temperature). As in
Nomad's NVIDIA device plugin, a value the hardware cannot report is ``None``,
never 0, so that "idle" and "unknown" stay distinguishable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class GpuSource(enum.StrEnum):
    """Where an inventory came from."""

    NVML = "nvml"
    """Real GPUs, fingerprinted through NVML."""
    SIMULATED = "simulated"
    """Declared with ``--simulate-gpus``; every view must label them simulated."""
    NONE = "none"
    """No GPUs: NVML is missing or found none (``GpuInventory.reason`` says which)."""


@dataclass(frozen=True)
class GpuFacts:
    """Static facts about one GPU, fixed for the life of the probe."""

    index: int
    """NVML device index (or position in a simulated spec); what CUDA numbers it by."""
    uuid: str
    """Stable identity, ``GPU-...`` from NVML; ``GPU-SIM-<model>-<index>`` when simulated."""
    model: str
    """Product name, e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"A100"`` when simulated."""
    memory_total_bytes: int
    """Device memory; 0 for a simulated GPU declared without a memory size."""
    simulated: bool
    """True when no such device exists and it only serves scheduling experiments."""
    driver_version: str
    """NVIDIA driver version, ``"simulated"`` for simulated GPUs."""
    compute_capability: tuple[int, int] | None
    """CUDA compute capability (major, minor); None when unknown."""
    nvlink_group: int | None = None
    """The group of GPUs joined to this one by NVLink (directly or through others of
    the group), named by its lowest index; None when NVLink joins it to no other GPU
    or NVML could not say. See ``murmur.node.agent.gpus.topology``."""
    pcie_group: int | None = None
    """The group of GPUs under the same PCIe switch as this one (no host bridge
    between them), named by its lowest index; None as for ``nvlink_group``."""


@dataclass(frozen=True)
class GpuTelemetry:
    """One live sample of one GPU; each value is None when it cannot be measured."""

    index: int
    """Matches ``GpuFacts.index``."""
    utilization_percent: int | None
    """Percent of the last sample period in which a kernel ran (0-100)."""
    memory_used_bytes: int | None
    """Device memory in use."""
    temperature_celsius: int | None
    """Core temperature."""
    power_milliwatts: int | None
    """Power draw of the board."""


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs of this node as fingerprinted at probe open."""

    source: GpuSource
    devices: tuple[GpuFacts, ...]
    reason: str
    """Why the inventory looks as it does, e.g. ``"NVML not found"`` or
    ``"simulated: 8xA100-80GB"``; shown next to the GPU count."""

    def summary(self) -> str:
        """One line for logs and status output, e.g. ``"0 GPUs (NVML not found)"``."""
        count = len(self.devices)
        noun = "GPU" if count == 1 else "GPUs"
        return f"{count} {noun} ({self.reason})"
