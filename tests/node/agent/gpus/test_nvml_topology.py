"""NvmlGpuProbe's reading of GPU locality (NVLink, PCIe switches), over the stand-in
NVML of test_nvml_probe_logic.py, extended with the topology calls.

No GPU exists on the build machines, and a single one shows no topology, so the
pairs are the fake's; it answers with pynvml's own constants and exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pynvml
import pytest

from murmur.node.agent.gpus import GpuFacts, NvmlGpuProbe
from tests.node.agent.gpus.test_nvml_probe_logic import FakeGpu, FakeNvml

NVSWITCH_BUS_ID = "00000000:C1:00.0"


def bus_id(index: int) -> str:
    """Upper-case hex, as NVML writes it."""
    return f"00000000:{0x1A + index:02X}:00.0"


@dataclass(frozen=True)
class _PciInfo:
    busId: str | bytes  # NVML's field name


@dataclass
class TopologyNvml(FakeNvml):
    """The fake NVML, with a topology: NVLink pairs (by P2P status or by links) and
    PCIe switches. ``None`` for a part makes every call of it "Not Supported"."""

    nvlink_pairs: set[frozenset[int]] | None = field(default_factory=set)
    switches: list[set[int]] | None = field(default_factory=list)
    links: dict[int, list[str | None]] = field(default_factory=dict)
    """Per GPU, per link: the PCI address at the far end, None for a link that is off."""
    pci_known: bool = True
    failing_pairs: set[frozenset[int]] = field(default_factory=set)
    """Pairs whose P2P status and common ancestor fail ("GPU is lost")."""
    asked: list[str] = field(default_factory=list)

    def nvmlDeviceGetP2PStatus(self, first: int, second: int, capability: int) -> int:
        self.asked.append("p2p")
        assert capability == pynvml.NVML_P2P_CAPS_INDEX_NVLINK
        pair = self._pair(first, second)
        if self.nvlink_pairs is None:
            raise pynvml.NVMLError_NotSupported()
        if pair in self.nvlink_pairs:
            return pynvml.NVML_P2P_STATUS_OK
        return pynvml.NVML_P2P_STATUS_NOT_SUPPORTED

    def nvmlDeviceGetTopologyCommonAncestor(self, first: int, second: int) -> int:
        self.asked.append("ancestor")
        pair = self._pair(first, second)
        if self.switches is None:
            raise pynvml.NVMLError_NotSupported()
        if any(pair <= switch for switch in self.switches):
            return pynvml.NVML_TOPOLOGY_SINGLE
        return pynvml.NVML_TOPOLOGY_HOSTBRIDGE

    def nvmlDeviceGetPciInfo(self, handle: int) -> _PciInfo:
        self._gpu(handle)
        if not self.pci_known:
            raise pynvml.NVMLError_NotSupported()
        return _PciInfo(bus_id(handle).encode())  # bytes, as older pynvml releases give

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        self.asked.append("link")
        ends = self.links.get(handle, [])
        if link >= len(ends):
            raise pynvml.NVMLError_InvalidArgument()
        return pynvml.NVML_FEATURE_DISABLED if ends[link] is None else pynvml.NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: int, link: int) -> _PciInfo:
        end = self.links[handle][link]
        assert end is not None
        return _PciInfo(end)

    def _pair(self, first: int, second: int) -> frozenset[int]:
        self._gpu(first)
        self._gpu(second)
        pair = frozenset((first, second))
        if pair in self.failing_pairs:
            raise pynvml.NVMLError_GpuIsLost()
        return pair


def groups(devices: tuple[GpuFacts, ...]) -> list[tuple[int, int | None, int | None]]:
    return [(device.index, device.nvlink_group, device.pcie_group) for device in devices]


def four_gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid=f"GPU-{index}") for index in range(4)]


def test_nvlink_pairs_and_pcie_switches_become_groups() -> None:
    nvml = TopologyNvml(
        gpus=four_gpus(),
        nvlink_pairs={frozenset((0, 1)), frozenset((2, 3))},
        switches=[{0, 2}, {1, 3}],
    )

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, 0, 0), (1, 0, 1), (2, 2, 0), (3, 2, 1)]
    assert inventory.reason == "NVML, driver 550.54.15"


def test_nvlink_joins_transitively_and_a_cpu_between_is_not_one_switch() -> None:
    nvml = TopologyNvml(
        gpus=four_gpus(),
        nvlink_pairs={frozenset((0, 1)), frozenset((1, 2))},
        switches=[],
    )

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, 0, None), (1, 0, None), (2, 0, None), (3, None, None)]


def test_nvlink_is_read_from_the_links_where_p2p_status_is_not_supported() -> None:
    nvml = TopologyNvml(
        gpus=four_gpus(),
        nvlink_pairs=None,
        links={
            0: [bus_id(1), NVSWITCH_BUS_ID, None],
            1: [bus_id(0).lower()],
            2: [None, bus_id(3)],  # 3 reports no link back: one side is enough
        },
    )

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, 0, None), (1, 0, None), (2, 2, None), (3, 2, None)]


def test_a_pair_nvml_cannot_answer_for_is_not_near() -> None:
    nvml = TopologyNvml(
        gpus=four_gpus()[:3],
        nvlink_pairs={frozenset((0, 1)), frozenset((1, 2))},
        switches=[{0, 1, 2}],
        failing_pairs={frozenset((1, 2))},
    )

    inventory = NvmlGpuProbe.open(nvml).inventory()

    # 0-1 and 0-2 are known near on the switch; 1-2 is unknown, 1 joins through 0.
    assert groups(inventory.devices) == [(0, 0, 0), (1, 0, 0), (2, None, 0)]


@pytest.mark.parametrize("pci_known", [True, False])
def test_a_driver_that_answers_no_topology_call_opens_with_no_groups(pci_known: bool) -> None:
    nvml = TopologyNvml(gpus=four_gpus(), nvlink_pairs=None, switches=None, pci_known=pci_known)

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(index, None, None) for index in range(4)]
    assert inventory.reason == "NVML, driver 550.54.15"


def test_a_pynvml_without_the_topology_calls_opens_with_no_groups() -> None:
    nvml = FakeNvml(gpus=[FakeGpu(), FakeGpu(uuid=b"GPU-second")])

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, None, None), (1, None, None)]


def test_a_lost_gpu_is_in_no_group_and_the_others_keep_theirs() -> None:
    gpus = four_gpus()
    gpus[1].lost = True
    nvml = TopologyNvml(
        gpus=gpus,
        nvlink_pairs={frozenset((0, 1)), frozenset((0, 2)), frozenset((2, 3))},
        switches=[{0, 1, 2, 3}],
    )

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, 0, 0), (2, 0, 0), (3, 0, 0)]


def test_one_gpu_asks_nvml_nothing_about_topology() -> None:
    nvml = TopologyNvml(gpus=four_gpus()[:1])

    inventory = NvmlGpuProbe.open(nvml).inventory()

    assert groups(inventory.devices) == [(0, None, None)]
    assert nvml.asked == []
