"""Errors raised by the GPU probe.

The tree::

    GpuProbeError
    ├── SimulatedGpuSpecError (also a ValueError): a bad ``--simulate-gpus`` value
    ├── NvmlUnavailableError: NVML cannot be used on this host (caught by open_gpu_probe)
    └── GpuProbeClosedError: telemetry asked of a probe that was closed

A missing GPU is not an error for the node: ``open_gpu_probe`` turns
``NvmlUnavailableError`` into an empty inventory that says why.
"""

from __future__ import annotations

EXPECTED_SIMULATED_SPEC = "COUNTxMODEL[-MEMORY] like 8xA100-80GB or 4xA100-80GB,2xT4-16GB"


class GpuProbeError(Exception):
    """Base class of every error raised by ``murmur.node.agent.gpus``."""


class SimulatedGpuSpecError(GpuProbeError, ValueError):
    """A simulated GPU inventory spec that does not follow the grammar.

    Attributes:
        spec: the spec exactly as the user gave it.
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, spec: str, problem: str) -> None:
        self.spec = spec
        self.problem = problem
        super().__init__(
            f"invalid --simulate-gpus {spec!r}: {problem}; expected {EXPECTED_SIMULATED_SPEC}"
        )


class NvmlUnavailableError(GpuProbeError):
    """NVML cannot report GPUs on this host.

    Attributes:
        reason: short text for the inventory, e.g. ``"NVML not found"``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class GpuProbeClosedError(GpuProbeError):
    """Telemetry was requested after ``close()``; open a new probe instead."""

    def __init__(self) -> None:
        super().__init__("GPU probe is closed; open a new one with open_gpu_probe()")
