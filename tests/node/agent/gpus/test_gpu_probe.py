"""open_gpu_probe picks the right probe and never fails for lack of a GPU."""

from __future__ import annotations

import ctypes

import pytest

from murmur.node.agent.gpus import (
    GpuProbeClosedError,
    GpuSource,
    NoGpuProbe,
    SimulatedGpuProbe,
    SimulatedGpuSpecError,
    open_gpu_probe,
)


def _nvml_library_loads() -> bool:
    """Whether the NVIDIA driver's NVML library is installed here, as pynvml loads it."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_simulate_gives_a_simulated_inventory() -> None:
    probe = open_gpu_probe(simulate="8xA100-80GB")
    try:
        inventory = probe.inventory()
    finally:
        probe.close()

    assert isinstance(probe, SimulatedGpuProbe)
    assert inventory.source is GpuSource.SIMULATED
    assert len(inventory.devices) == 8
    assert inventory.reason == "simulated: 8xA100-80GB"


def test_simulate_with_a_bad_spec_raises() -> None:
    with pytest.raises(SimulatedGpuSpecError, match=r"invalid --simulate-gpus '8x'"):
        open_gpu_probe(simulate="8x")


def test_simulate_empty_string_is_a_bad_spec_not_a_request_for_nvml() -> None:
    with pytest.raises(SimulatedGpuSpecError, match="it is empty"):
        open_gpu_probe(simulate="")


@pytest.mark.skipif(
    _nvml_library_loads(),
    reason="libnvidia-ml.so.1 is installed here; test_nvml_real_gpu.py covers this host",
)
def test_host_without_nvml_gets_no_gpus_and_says_why() -> None:
    probe = open_gpu_probe(simulate=None)
    try:
        inventory = probe.inventory()
        samples = probe.telemetry()
    finally:
        probe.close()

    assert isinstance(probe, NoGpuProbe)
    assert inventory.source is GpuSource.NONE
    assert inventory.devices == ()
    assert inventory.reason == "NVML not found"
    assert inventory.summary() == "0 GPUs (NVML not found)"
    assert samples == []


def test_no_gpu_probe_has_empty_telemetry_until_closed() -> None:
    probe = NoGpuProbe("NVML: driver not loaded")

    assert probe.telemetry() == []
    assert probe.inventory().summary() == "0 GPUs (NVML: driver not loaded)"
    probe.close()
    probe.close()
    with pytest.raises(GpuProbeClosedError):
        probe.telemetry()


def test_inventory_summary_uses_singular_for_one_gpu() -> None:
    probe = open_gpu_probe(simulate="1xT4-16GB")

    assert probe.inventory().summary() == "1 GPU (simulated: 1xT4-16GB)"
