"""Real GPUs through NVML; the only module of Murmur that calls NVML.

Everything NVML-specific stays here: library loading, error codes, bytes-vs-str
names across pynvml versions. Callers see ``GpuFacts`` and ``GpuTelemetry``, and a
value this GPU cannot report (``NVMLError_NotSupported`` and friends) is None.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from murmur.node.agent.gpus.errors import GpuProbeClosedError, NvmlUnavailableError
from murmur.node.agent.gpus.model import GpuFacts, GpuInventory, GpuSource, GpuTelemetry

_T = TypeVar("_T")


class _NvmlMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def used(self) -> int: ...


class _NvmlUtilization(Protocol):
    @property
    def gpu(self) -> int: ...


class NvmlApi(Protocol):
    """The part of the ``pynvml`` module this probe uses.

    The real module is passed in production; a test may pass a stand-in, since no
    GPU exists on the build machines.
    """

    NVMLError: type[Exception]
    NVMLError_LibraryNotFound: type[Exception]
    NVMLError_DriverNotLoaded: type[Exception]
    NVML_TEMPERATURE_GPU: int

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _NvmlMemory: ...
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _NvmlUtilization: ...
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...


class NvmlGpuProbe:
    """A ``GpuProbe`` over the GPUs NVML sees; build it with ``NvmlGpuProbe.open()``.

    Thread-safe: ``telemetry()`` runs in worker threads (``asyncio.to_thread``)
    while ``close()`` may come from the event loop's thread.
    """

    def __init__(
        self, nvml: NvmlApi, inventory: GpuInventory, handles: Sequence[tuple[int, Any]]
    ) -> None:
        """Use ``open()``; this only stores what it fingerprinted."""
        self._nvml = nvml
        self._inventory = inventory
        self._handles = tuple(handles)
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, nvml: NvmlApi | None = None) -> NvmlGpuProbe:
        """Initialise NVML and fingerprint every GPU it can read.

        A GPU whose name, UUID or memory cannot be read (e.g. "GPU is lost") is left
        out of the inventory, and the inventory's reason says so; the others keep
        their NVML indices.

        Args:
            nvml: the NVML module; the real ``pynvml`` unless a test gives another.

        Returns:
            An open probe holding at least one GPU.

        Raises:
            NvmlUnavailableError: NVML is not installed, the driver is not loaded,
                initialisation failed, or no GPU could be read. NVML is shut down
                again before this is raised.
        """
        if nvml is None:
            # Loaded here, not at import: a node with simulated GPUs, and every module
            # that only names this class, never pays for pynvml.
            import pynvml

            nvml = pynvml
        api: NvmlApi = nvml
        try:
            api.nvmlInit()
        except api.NVMLError_LibraryNotFound:
            raise NvmlUnavailableError("NVML not found") from None
        except api.NVMLError_DriverNotLoaded:
            raise NvmlUnavailableError("NVML: driver not loaded") from None
        except api.NVMLError as error:
            raise NvmlUnavailableError(f"NVML: {error}") from None
        try:
            return cls._fingerprint(api)
        except BaseException:
            _shutdown_quietly(api)
            raise

    @classmethod
    def _fingerprint(cls, api: NvmlApi) -> NvmlGpuProbe:
        try:
            count = api.nvmlDeviceGetCount()
        except api.NVMLError as error:
            raise NvmlUnavailableError(f"NVML: cannot count GPUs: {error}") from None
        if count == 0:
            raise NvmlUnavailableError("NVML found no GPUs")
        driver_version = _read_or_none(api, api.nvmlSystemGetDriverVersion)
        driver = "unknown" if driver_version is None else _text(driver_version)
        devices: list[GpuFacts] = []
        handles: list[tuple[int, Any]] = []
        skipped: list[str] = []
        for index in range(count):
            try:
                handle = api.nvmlDeviceGetHandleByIndex(index)
                facts = GpuFacts(
                    index=index,
                    uuid=_text(api.nvmlDeviceGetUUID(handle)),
                    model=_text(api.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(api.nvmlDeviceGetMemoryInfo(handle).total),
                    simulated=False,
                    driver_version=driver,
                    compute_capability=_read_compute_capability(api, handle),
                )
            except api.NVMLError as error:
                skipped.append(f"GPU {index} skipped: {error}")
                continue
            devices.append(facts)
            handles.append((index, handle))
        reason = f"NVML, driver {driver}"
        if not devices:
            raise NvmlUnavailableError(f"NVML could not read any of {count} GPUs")
        if skipped:
            reason += f" ({'; '.join(skipped)})"
        inventory = GpuInventory(source=GpuSource.NVML, devices=tuple(devices), reason=reason)
        return cls(api, inventory, handles)

    def inventory(self) -> GpuInventory:
        return self._inventory

    def telemetry(self) -> list[GpuTelemetry]:
        """Sample every GPU of the inventory; blocks for a few NVML calls per GPU.

        Raises:
            GpuProbeClosedError: ``close()`` was called.
        """
        api = self._nvml
        with self._lock:
            if self._closed:
                raise GpuProbeClosedError()
            samples = []
            for index, handle in self._handles:
                utilization = _read_or_none(api, api.nvmlDeviceGetUtilizationRates, handle)
                memory = _read_or_none(api, api.nvmlDeviceGetMemoryInfo, handle)
                temperature = _read_or_none(
                    api, api.nvmlDeviceGetTemperature, handle, api.NVML_TEMPERATURE_GPU
                )
                power = _read_or_none(api, api.nvmlDeviceGetPowerUsage, handle)
                samples.append(
                    GpuTelemetry(
                        index=index,
                        utilization_percent=None if utilization is None else int(utilization.gpu),
                        memory_used_bytes=None if memory is None else int(memory.used),
                        temperature_celsius=None if temperature is None else int(temperature),
                        power_milliwatts=None if power is None else int(power),
                    )
                )
            return samples

    def close(self) -> None:
        """Shut NVML down; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _shutdown_quietly(self._nvml)


def _read_or_none(api: NvmlApi, read: Callable[..., _T], *args: Any) -> _T | None:
    """Call one NVML query; None when NVML cannot answer it for this GPU."""
    try:
        return read(*args)
    except api.NVMLError:
        return None


def _read_compute_capability(api: NvmlApi, handle: Any) -> tuple[int, int] | None:
    capability = _read_or_none(api, api.nvmlDeviceGetCudaComputeCapability, handle)
    if capability is None:
        return None
    major, minor = capability
    return (int(major), int(minor))


def _shutdown_quietly(api: NvmlApi) -> None:
    # Shutdown only releases NVML's reference count; if it fails there is nothing
    # left for the node to do about it.
    with contextlib.suppress(api.NVMLError):
        api.nvmlShutdown()


def _text(value: str | bytes) -> str:
    """NVML strings arrive as bytes from older pynvml releases and as str from newer."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
