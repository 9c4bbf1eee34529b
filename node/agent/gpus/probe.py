"""The one interface the daemon uses for GPUs, and the choice of implementation.

The daemon opens a probe once at start-up, publishes ``inventory()`` through
gossip, and samples ``telemetry()`` from a worker thread. Which probe it gets:
simulated when ``--simulate-gpus`` is given, NVML when it works, and otherwise
one with no GPUs, so that a host without GPUs still runs CPU jobs.
"""

from __future__ import annotations

import threading
from typing import Protocol

from murmur.node.agent.gpus.errors import GpuProbeClosedError, NvmlUnavailableError
from murmur.node.agent.gpus.model import GpuInventory, GpuSource, GpuTelemetry
from murmur.node.agent.gpus.nvml import NvmlGpuProbe
from murmur.node.agent.gpus.simulated import SimulatedGpuProbe


class GpuProbe(Protocol):
    """Static facts and live telemetry of this host's GPUs."""

    def inventory(self) -> GpuInventory:
        """The GPUs fingerprinted when the probe opened; the same object every call."""
        ...

    def telemetry(self) -> list[GpuTelemetry]:
        """Sample every GPU of the inventory, in index order.

        Blocks on the driver: call it with ``asyncio.to_thread``, never on the
        event loop.

        Raises:
            GpuProbeClosedError: ``close()`` was called.
        """
        ...

    def close(self) -> None:
        """Release the driver; calling it again does nothing."""
        ...


class NoGpuProbe:
    """The probe of a host without usable GPUs; its inventory says why."""

    def __init__(self, reason: str) -> None:
        self._inventory = GpuInventory(source=GpuSource.NONE, devices=(), reason=reason)
        self._closed = threading.Event()

    def inventory(self) -> GpuInventory:
        return self._inventory

    def telemetry(self) -> list[GpuTelemetry]:
        if self._closed.is_set():
            raise GpuProbeClosedError()
        return []

    def close(self) -> None:
        self._closed.set()


def open_gpu_probe(*, simulate: str | None) -> GpuProbe:
    """Open the probe for this host; never fails for lack of a GPU.

    Args:
        simulate: the ``--simulate-gpus`` spec (e.g. ``"8xA100-80GB"``), or None to
            use the real GPUs through NVML.

    Returns:
        A simulated probe if ``simulate`` is given; else an NVML probe; else, when
        NVML is missing, its driver is not loaded, or it sees no GPU, a probe with
        no GPUs whose inventory reason says which (e.g. ``"NVML not found"``).

    Raises:
        SimulatedGpuSpecError: ``simulate`` does not follow the spec grammar.
    """
    if simulate is not None:
        return SimulatedGpuProbe(simulate)
    try:
        return NvmlGpuProbe.open()
    except NvmlUnavailableError as error:
        return NoGpuProbe(error.reason)
