"""GPUs that do not exist, declared with ``--simulate-gpus`` to exercise scheduling.

A lab can try the scheduler with 8 A100s per node on laptops. Every fact a simulated
probe reports says so (``simulated=True``, ``GPU-SIM-`` UUIDs, driver ``"simulated"``),
and its telemetry is all None: there is nothing real to measure.
"""

from __future__ import annotations

import re
import threading

from murmur.node.agent.gpus.errors import GpuProbeClosedError, SimulatedGpuSpecError
from murmur.node.agent.gpus.model import GpuFacts, GpuInventory, GpuSource, GpuTelemetry
from murmur.node.agent.gpus.topology import blocks, group_ids

MAX_SIMULATED_GPUS = 64
"""Upper bound for one group and for the whole spec; more is a typo, not a server."""

_MEMORY_UNIT_BYTES = {"GB": 2**30, "GIB": 2**30, "MB": 2**20, "MIB": 2**20}
_GROUP = re.compile(r"(?P<count>[0-9]+)x(?P<model>[A-Za-z0-9][A-Za-z0-9_.]*)(?:-(?P<memory>.*))?")
_MEMORY = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[A-Za-z]+)")
_TOPOLOGY_KEYS = ("nvlink", "pcie")


def parse_simulated_spec(spec: str) -> tuple[GpuFacts, ...]:
    """Parse a simulated GPU inventory such as ``"4xA100-80GB,2xT4-16GB"``.

    Grammar: one or more groups ``COUNTxMODEL[-MEMORY][:nvlink=N][:pcie=N]`` joined
    by ``","`` (spaces around commas are allowed). COUNT is 1 to 64, and so is the
    total. MODEL is letters, digits, ``_`` and ``.`` (no ``-``: the first ``-`` starts
    the memory). MEMORY is a positive whole number with unit ``GB``/``GiB``/``MB``/
    ``MiB`` (any case); GB means GiB (2**30 bytes), as GPU vendors mean it when they
    sell an "80GB" card. Without MEMORY the GPUs have ``memory_total_bytes == 0``.
    Devices are indexed 0, 1, 2, ... across groups in order.

    ``:nvlink=N`` joins the group's GPUs by NVLink in islands of N consecutive
    indices, and ``:pcie=N`` puts them under PCIe switches of N each; N must divide
    COUNT. ``"8xA100-80GB:nvlink=4"`` is two NVLink islands, GPUs 0-3 and 4-7.
    Without them the GPUs have no locality (``nvlink_group``/``pcie_group`` None).

    Args:
        spec: the value of ``--simulate-gpus``.

    Returns:
        The facts of every simulated GPU, in index order.

    Raises:
        SimulatedGpuSpecError: the spec does not follow the grammar; the message
            names the problem and shows the expected format.
    """
    if not spec.strip():
        raise SimulatedGpuSpecError(spec, "it is empty")
    devices: list[GpuFacts] = []
    for group in spec.split(","):
        devices.extend(_parse_group(spec, group.strip(), first_index=len(devices)))
        if len(devices) > MAX_SIMULATED_GPUS:
            raise SimulatedGpuSpecError(
                spec, f"{len(devices)} GPUs in all, at most {MAX_SIMULATED_GPUS} allowed"
            )
    return tuple(devices)


def _parse_group(spec: str, group: str, *, first_index: int) -> list[GpuFacts]:
    inventory, *options = group.split(":")
    match = _GROUP.fullmatch(inventory)
    if match is None:
        raise SimulatedGpuSpecError(spec, _describe_bad_group(inventory or group))
    count = int(match["count"])
    if not 1 <= count <= MAX_SIMULATED_GPUS:
        raise SimulatedGpuSpecError(
            spec, f"count {count} in {group!r} is not between 1 and {MAX_SIMULATED_GPUS}"
        )
    model = match["model"]
    memory = match["memory"]
    memory_total_bytes = 0 if memory is None else _parse_memory(spec, group, memory)
    sizes = _parse_topology(spec, group, options, count)
    nvlink = group_ids(
        range(first_index, first_index + count), blocks(first_index, count, sizes["nvlink"])
    )
    pcie = group_ids(
        range(first_index, first_index + count), blocks(first_index, count, sizes["pcie"])
    )
    return [
        GpuFacts(
            index=index,
            uuid=f"GPU-SIM-{model}-{index}",
            model=model,
            memory_total_bytes=memory_total_bytes,
            simulated=True,
            driver_version="simulated",
            compute_capability=None,
            nvlink_group=nvlink.get(index),
            pcie_group=pcie.get(index),
        )
        for index in range(first_index, first_index + count)
    ]


def _parse_topology(spec: str, group: str, options: list[str], count: int) -> dict[str, int]:
    """The island sizes a group's ``:nvlink=N``/``:pcie=N`` options ask for (1: none)."""
    sizes = dict.fromkeys(_TOPOLOGY_KEYS, 1)
    seen: set[str] = set()
    for option in options:
        key, separator, value = option.strip().partition("=")
        key = key.strip().lower()
        value = value.strip()
        if key not in sizes or not separator:
            raise SimulatedGpuSpecError(
                spec, f"{option!r} in {group!r} is not :nvlink=N or :pcie=N"
            )
        if key in seen:
            raise SimulatedGpuSpecError(spec, f"{key} is given twice in {group!r}")
        seen.add(key)
        size = int(value) if value.isascii() and value.isdigit() else 0
        if size < 1 or count % size:
            raise SimulatedGpuSpecError(
                spec, f"{key}={value} in {group!r} is not a whole number dividing {count}"
            )
        sizes[key] = size
    return sizes


def _describe_bad_group(group: str) -> str:
    """Say what is wrong with a group the grammar rejected, as precisely as is cheap."""
    if not group:
        return "a group between commas is empty"
    count, separator, rest = group.partition("x")
    if not separator or not count.isdigit():
        return f"{group!r} does not start with COUNTx"
    if not rest:
        return f"{group!r} has no MODEL after {count + 'x'!r}"
    return f"{group!r} has a MODEL that is not letters, digits, '_' or '.'"


def _parse_memory(spec: str, group: str, memory: str) -> int:
    match = _MEMORY.fullmatch(memory)
    if match is None:
        raise SimulatedGpuSpecError(
            spec, f"memory {memory!r} in {group!r} is not a whole number with a unit like 80GB"
        )
    unit_bytes = _MEMORY_UNIT_BYTES.get(match["unit"].upper())
    if unit_bytes is None:
        raise SimulatedGpuSpecError(
            spec, f"memory unit {match['unit']!r} in {group!r} is not GB, GiB, MB or MiB"
        )
    amount = int(match["amount"])
    if amount == 0:
        raise SimulatedGpuSpecError(spec, f"memory in {group!r} is zero")
    return amount * unit_bytes


class SimulatedGpuProbe:
    """A ``GpuProbe`` over GPUs declared by a spec; see ``parse_simulated_spec``."""

    def __init__(self, spec: str) -> None:
        """Parse ``spec`` now, so a typo stops the node at start-up.

        Raises:
            SimulatedGpuSpecError: the spec does not follow the grammar.
        """
        self._inventory = GpuInventory(
            source=GpuSource.SIMULATED,
            devices=parse_simulated_spec(spec),
            reason=f"simulated: {spec.strip()}",
        )
        self._closed = threading.Event()

    def inventory(self) -> GpuInventory:
        return self._inventory

    def telemetry(self) -> list[GpuTelemetry]:
        """One all-None sample per device: there is nothing real to measure."""
        if self._closed.is_set():
            raise GpuProbeClosedError()
        return [
            GpuTelemetry(
                index=device.index,
                utilization_percent=None,
                memory_used_bytes=None,
                temperature_celsius=None,
                power_milliwatts=None,
            )
            for device in self._inventory.devices
        ]

    def close(self) -> None:
        self._closed.set()
