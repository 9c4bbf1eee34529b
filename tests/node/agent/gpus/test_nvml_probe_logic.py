"""NvmlGpuProbe's handling of what NVML answers, over a stand-in NVML library.

FakeNvml below is the one fake this test suite allows: no GPU can exist on the
build machines, so these tests stand in for the driver. It raises pynvml's own
exception classes, so the error handling under test is the real one. The real
library is exercised by test_nvml_real_gpu.py on a GPU machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml
import pytest

from murmur.node.agent.gpus import (
    GpuProbeClosedError,
    GpuSource,
    NvmlGpuProbe,
    NvmlUnavailableError,
)

GIB = 2**30

_T = TypeVar("_T")


@dataclass
class FakeGpu:
    """One pretend device; a field set to None makes NVML answer "Not Supported",
    and a lost one answers "GPU is lost" to everything."""

    name: str | bytes = b"NVIDIA H100 80GB HBM3"
    uuid: str | bytes = b"GPU-0a1b2c3d-0000-1111-2222-333344445555"
    memory_total: int = 80 * GIB
    memory_used: int = 3 * GIB
    compute_capability: tuple[int, int] | None = (9, 0)
    utilization: int | None = 37
    temperature: int | None = 41
    power_milliwatts: int | None = 123_456
    lost: bool = False


@dataclass(frozen=True)
class _Memory:
    total: int
    used: int


@dataclass(frozen=True)
class _Utilization:
    gpu: int


@dataclass
class FakeNvml:
    """FAKE NVML library (stand-in for the pynvml module), see the module docstring."""

    gpus: list[FakeGpu] = field(default_factory=lambda: [FakeGpu()])
    init_error: Exception | None = None
    driver_version: str | bytes | None = "550.54.15"
    initialised: int = 0
    shutdowns: int = 0

    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self.initialised -= 1
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._require_init()
        if self.driver_version is None:
            raise pynvml.NVMLError_NotSupported()
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._gpu(index)
        return index

    def nvmlDeviceGetName(self, handle: Any) -> str | bytes:
        return self._gpu(handle).name

    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes:
        return self._gpu(handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _Memory:
        gpu = self._gpu(handle)
        return _Memory(total=gpu.memory_total, used=gpu.memory_used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        return self._supported(self._gpu(handle).compute_capability)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Utilization:
        return _Utilization(gpu=self._supported(self._gpu(handle).utilization))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._supported(self._gpu(handle).temperature)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._supported(self._gpu(handle).power_milliwatts)

    def _require_init(self) -> None:
        if self.initialised <= 0:
            raise pynvml.NVMLError_Uninitialized()

    def _gpu(self, handle: int) -> FakeGpu:
        # Handles are indices here; real ones are opaque pointers.
        self._require_init()
        gpu = self.gpus[handle]
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        return gpu

    def _supported(self, value: _T | None) -> _T:
        if value is None:
            raise pynvml.NVMLError_NotSupported()
        return value


@pytest.mark.parametrize(
    ("init_error", "reason"),
    [
        (pynvml.NVMLError_LibraryNotFound(), "NVML not found"),
        (pynvml.NVMLError_DriverNotLoaded(), "NVML: driver not loaded"),
        (pynvml.NVMLError_NoPermission(), "NVML: Insufficient Permissions"),
        (pynvml.NVMLError_LibRmVersionMismatch(), "NVML: RM has detected an NVML/RM version"),
    ],
)
def test_open_says_why_nvml_cannot_start(init_error: Exception, reason: str) -> None:
    nvml = FakeNvml(init_error=init_error)

    with pytest.raises(NvmlUnavailableError) as caught:
        NvmlGpuProbe.open(nvml)

    assert caught.value.reason.startswith(reason)


def test_open_with_no_devices_shuts_nvml_down_again() -> None:
    nvml = FakeNvml(gpus=[])

    with pytest.raises(NvmlUnavailableError) as caught:
        NvmlGpuProbe.open(nvml)

    assert caught.value.reason == "NVML found no GPUs"
    assert nvml.initialised == 0
    assert nvml.shutdowns == 1


def test_open_fingerprints_facts_and_decodes_bytes() -> None:
    nvml = FakeNvml(
        gpus=[FakeGpu(), FakeGpu(name="NVIDIA T4", uuid="GPU-ffff", memory_total=16 * GIB)],
        driver_version=b"535.104.05",
    )

    probe = NvmlGpuProbe.open(nvml)
    inventory = probe.inventory()

    assert inventory.source is GpuSource.NVML
    assert inventory.reason == "NVML, driver 535.104.05"
    first, second = inventory.devices
    assert first.index == 0
    assert first.model == "NVIDIA H100 80GB HBM3"
    assert first.uuid == "GPU-0a1b2c3d-0000-1111-2222-333344445555"
    assert first.memory_total_bytes == 80 * GIB
    assert first.compute_capability == (9, 0)
    assert first.driver_version == "535.104.05"
    assert not first.simulated
    assert (second.index, second.model, second.uuid) == (1, "NVIDIA T4", "GPU-ffff")
    assert second.memory_total_bytes == 16 * GIB


def test_open_leaves_unknown_facts_as_none_or_unknown() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(compute_capability=None)], driver_version=None)

    (device,) = NvmlGpuProbe.open(nvml).inventory().devices

    assert device.compute_capability is None
    assert device.driver_version == "unknown"


def test_open_skips_a_lost_gpu_and_says_so() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(), FakeGpu(lost=True), FakeGpu(uuid=b"GPU-third")])

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert [device.index for device in inventory.devices] == [0, 2]
    assert inventory.reason == "NVML, driver 550.54.15 (GPU 1 skipped: GPU is lost)"


def test_open_with_every_gpu_lost_is_unavailable() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(lost=True), FakeGpu(lost=True)])

    with pytest.raises(NvmlUnavailableError) as caught:
        NvmlGpuProbe.open(nvml)

    assert caught.value.reason == "NVML could not read any of 2 GPUs"
    assert nvml.initialised == 0


def test_telemetry_reads_every_value() -> None:
    probe = NvmlGpuProbe.open(FakeNvml())

    (sample,) = probe.telemetry()

    assert sample.index == 0
    assert sample.utilization_percent == 37
    assert sample.memory_used_bytes == 3 * GIB
    assert sample.temperature_celsius == 41
    assert sample.power_milliwatts == 123_456


def test_telemetry_reports_unsupported_values_as_none_not_zero() -> None:
    probe = NvmlGpuProbe.open(FakeNvml(gpus=[FakeGpu(power_milliwatts=None, temperature=None)]))

    (sample,) = probe.telemetry()

    assert sample.power_milliwatts is None
    assert sample.temperature_celsius is None
    assert sample.utilization_percent == 37
    assert sample.memory_used_bytes == 3 * GIB


def test_telemetry_of_a_gpu_lost_after_open_is_all_none() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(), FakeGpu()])
    probe = NvmlGpuProbe.open(nvml)
    nvml.gpus[1].lost = True

    healthy, lost = probe.telemetry()

    assert healthy.utilization_percent == 37
    assert lost.index == 1
    assert (
        lost.utilization_percent,
        lost.memory_used_bytes,
        lost.temperature_celsius,
        lost.power_milliwatts,
    ) == (None, None, None, None)


def test_close_shuts_nvml_down_once_and_ends_telemetry() -> None:
    nvml = FakeNvml()
    probe = NvmlGpuProbe.open(nvml)

    probe.close()
    probe.close()

    assert nvml.shutdowns == 1
    assert nvml.initialised == 0
    with pytest.raises(GpuProbeClosedError):
        probe.telemetry()
