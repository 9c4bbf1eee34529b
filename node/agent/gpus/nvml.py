"""Real GPUs through NVML; the only module of Murmur that calls NVML.

Everything NVML-specific stays here: library loading, error codes, bytes-vs-str
names across pynvml versions. Callers see ``GpuFacts`` and ``GpuTelemetry``, and a
value this GPU cannot report (``NVMLError_NotSupported`` and friends) is None.

Locality is read once, per pair of GPUs, when the probe opens: NVLink from
``nvmlDeviceGetP2PStatus`` (NVLink capability; it sees NVSwitch fabrics too), or,
where that call fails, from the GPU's own links (``nvmlDeviceGetNvLinkState`` and
the PCI address at each link's far end); one PCIe switch from
``nvmlDeviceGetTopologyCommonAncestor`` (internal, single or multiple switches, no
host bridge). A pair NVML cannot answer for counts as not near, so a driver that
answers none of it leaves every GPU's groups None and the probe opens as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from murmur.node.agent.gpus.errors import GpuProbeClosedError, NvmlUnavailableError
from murmur.node.agent.gpus.model import GpuFacts, GpuInventory, GpuSource, GpuTelemetry
from murmur.node.agent.gpus.topology import group_ids

_T = TypeVar("_T")

# Values of nvml.h's enums (its ABI, the same in every pynvml release).
_P2P_CAPS_INDEX_NVLINK = 2
_P2P_STATUS_OK = 0
_TOPOLOGY_MULTIPLE = 20
"""Common ancestors up to this one (internal, single, multiple) are PCIe switches;
beyond it (host bridge, NUMA node, system) the path crosses a CPU."""
_FEATURE_ENABLED = 1
_NVLINK_MAX_LINKS = 18
"""Links to try per GPU when pynvml does not say (``NVML_NVLINK_MAX_LINKS``)."""


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

    # Locality, read through ``_optional_call``: a pynvml (or a stand-in) without
    # them still opens, with no locality known.
    # nvmlDeviceGetP2PStatus(handle, handle, index) -> int
    # nvmlDeviceGetTopologyCommonAncestor(handle, handle) -> int
    # nvmlDeviceGetPciInfo(handle) -> struct with .busId
    # nvmlDeviceGetNvLinkState(handle, link) -> int
    # nvmlDeviceGetNvLinkRemotePciInfo(handle, link) -> struct with .busId


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
        if len(handles) > 1:
            nvlink, pcie = _read_locality(api, handles)
            devices = [
                dataclasses.replace(
                    facts, nvlink_group=nvlink.get(facts.index), pcie_group=pcie.get(facts.index)
                )
                for facts in devices
            ]
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


def _read_locality(
    api: NvmlApi, handles: Sequence[tuple[int, Any]]
) -> tuple[dict[int, int], dict[int, int]]:
    """(NVLink groups, PCIe switch groups) of the GPUs: index → group id, for the
    GPUs in a group of two or more (see ``topology.group_ids``)."""
    nvlink_pairs: list[tuple[int, int]] = []
    pcie_pairs: list[tuple[int, int]] = []
    links: dict[int, frozenset[int]] | None = None
    for position, (first, first_handle) in enumerate(handles):
        for second, second_handle in handles[position + 1 :]:
            status = _optional_call(
                api, "nvmlDeviceGetP2PStatus", first_handle, second_handle, _P2P_CAPS_INDEX_NVLINK
            )
            if status is not None:
                joined = status == _P2P_STATUS_OK
            else:
                if links is None:
                    links = _nvlink_peers(api, handles)
                joined = second in links[first] or first in links[second]
            if joined:
                nvlink_pairs.append((first, second))
            ancestor = _optional_call(
                api, "nvmlDeviceGetTopologyCommonAncestor", first_handle, second_handle
            )
            if ancestor is not None and int(ancestor) <= _TOPOLOGY_MULTIPLE:
                pcie_pairs.append((first, second))
    indices = [index for index, _ in handles]
    return group_ids(indices, nvlink_pairs), group_ids(indices, pcie_pairs)


def _nvlink_peers(api: NvmlApi, handles: Sequence[tuple[int, Any]]) -> dict[int, frozenset[int]]:
    """Each GPU → the GPUs at the far end of its active NVLinks (by PCI address).

    A link to an NVSwitch ends at the switch, not at a GPU, so it joins nothing
    here; ``nvmlDeviceGetP2PStatus`` is what sees those.
    """
    gpu_at: dict[str, int] = {}
    for index, handle in handles:
        address = _bus_id(_optional_call(api, "nvmlDeviceGetPciInfo", handle))
        if address:
            gpu_at[address] = index
    max_links = getattr(api, "NVML_NVLINK_MAX_LINKS", _NVLINK_MAX_LINKS)
    peers: dict[int, frozenset[int]] = {}
    for index, handle in handles:
        found: set[int] = set()
        for link in range(int(max_links)) if gpu_at else ():
            state = _optional_call(api, "nvmlDeviceGetNvLinkState", handle, link)
            if state != _FEATURE_ENABLED:
                continue
            remote = _optional_call(api, "nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            peer = gpu_at.get(_bus_id(remote))
            if peer is not None and peer != index:
                found.add(peer)
        peers[index] = frozenset(found)
    return peers


def _optional_call(api: NvmlApi, name: str, *args: Any) -> Any:
    """Call the NVML function ``name``; None when this pynvml lacks it (an old
    release) or NVML cannot answer (not supported, no such link, GPU lost)."""
    read = getattr(api, name, None)
    if read is None:
        return None
    try:
        return read(*args)
    except api.NVMLError:
        return None


def _bus_id(pci_info: Any) -> str:
    """The PCI address in an NVML PCI info struct, lower-cased; "" when unknown."""
    address = getattr(pci_info, "busId", None)
    if not isinstance(address, str | bytes):
        return ""
    return _text(address).strip().lower()


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
