"""NvmlGpuProbe against a real NVIDIA GPU; skipped where NVML cannot be used.

Run on the device machine with ``pytest -m gpu tests/node/agent/gpus``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from murmur.node.agent.gpus import GpuSource, NvmlGpuProbe, NvmlUnavailableError

pytestmark = pytest.mark.gpu


@pytest.fixture
def probe() -> Iterator[NvmlGpuProbe]:
    try:
        opened = NvmlGpuProbe.open()
    except NvmlUnavailableError as error:
        pytest.skip(f"needs a real NVIDIA GPU: {error.reason}")
    yield opened
    opened.close()


def test_fingerprints_real_gpus(probe: NvmlGpuProbe) -> None:
    inventory = probe.inventory()

    assert inventory.source is GpuSource.NVML
    assert len(inventory.devices) > 0
    assert inventory.reason.startswith("NVML, driver ")
    for device in inventory.devices:
        assert device.uuid.startswith("GPU-")
        assert device.memory_total_bytes > 0
        assert device.model
        assert not device.simulated
        assert device.driver_version != "unknown"
        if device.compute_capability is not None:
            major, minor = device.compute_capability
            assert major >= 1
            assert minor >= 0
    assert len({device.uuid for device in inventory.devices}) == len(inventory.devices)


def test_samples_every_gpu_with_plausible_values(probe: NvmlGpuProbe) -> None:
    devices = {device.index: device for device in probe.inventory().devices}

    samples = probe.telemetry()

    assert [sample.index for sample in samples] == sorted(devices)
    for sample in samples:
        if sample.utilization_percent is not None:
            assert 0 <= sample.utilization_percent <= 100
        if sample.memory_used_bytes is not None:
            assert 0 <= sample.memory_used_bytes <= devices[sample.index].memory_total_bytes
        if sample.temperature_celsius is not None:
            assert 0 < sample.temperature_celsius < 150
        if sample.power_milliwatts is not None:
            assert sample.power_milliwatts > 0
        values = (
            sample.utilization_percent,
            sample.memory_used_bytes,
            sample.temperature_celsius,
            sample.power_milliwatts,
        )
        assert all(value is None or type(value) is int for value in values)
