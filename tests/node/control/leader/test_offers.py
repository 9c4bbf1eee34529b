"""Gossiped NodeInfo to offers: GPU locality travels from the probe to placement."""

from __future__ import annotations

from murmur.node.agent.convert import gpu_inventory_message
from murmur.node.agent.gpus import SimulatedGpuProbe
from murmur.node.control.leader.offers import offer_of
from murmur.node.control.leader.placement import GpuOffer, NodeOffer, plan_assignments
from murmur.node.control.queue import AssignJob, SubmitJob
from murmur.v1 import types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def gossiped(simulate: str) -> types_pb2.NodeInfo:
    """The NodeInfo of a node with simulated GPUs, as another node decodes it."""
    info = types_pb2.NodeInfo(
        name="n1",
        state=types_pb2.NODE_STATE_ALIVE,
        runtimes=["process"],
        gpus=gpu_inventory_message(SimulatedGpuProbe(simulate).inventory()),
        load=types_pb2.NodeLoad(cpu_count=64, memory_total_bytes=512 << 30),
    )
    return types_pb2.NodeInfo.FromString(info.SerializeToString())


def test_an_offer_carries_each_gpus_groups_and_none_where_there_is_none() -> None:
    offer = offer_of(gossiped("4xA100-80GB:nvlink=2:pcie=4,2xT4"))

    assert offer.gpus == (
        GpuOffer(0, "A100", 80 << 30, nvlink_group=0, pcie_group=0),
        GpuOffer(1, "A100", 80 << 30, nvlink_group=0, pcie_group=0),
        GpuOffer(2, "A100", 80 << 30, nvlink_group=2, pcie_group=0),
        GpuOffer(3, "A100", 80 << 30, nvlink_group=2, pcie_group=0),
        GpuOffer(4, "T4", 0),
        GpuOffer(5, "T4", 0),
    )


def test_an_unset_group_on_the_wire_is_unknown_not_group_zero() -> None:
    info = gossiped("2xA100:nvlink=2")
    assert info.gpus.devices[0].nvlink_group == 0
    info.gpus.devices[0].ClearField("nvlink_group")

    offer = offer_of(info)

    assert [gpu.nvlink_group for gpu in offer.gpus] == [None, 0]


def test_placement_keeps_a_rank_inside_one_nvlink_island_of_the_offer() -> None:
    log = Log()
    log.apply(SubmitJob("held", spec(gpus=1), "u", "", 0))
    assert log.apply(AssignJob("held", "n1", "r0", 1, (1,), SECOND)).ok
    log.apply(SubmitJob("four", spec(gpus=4), "u", "", 0))
    near = offer_of(gossiped("8xA100-80GB:nvlink=4"))
    blind = offer_of(gossiped("8xA100-80GB"))

    def placed(offer: NodeOffer) -> list[tuple[int, ...]]:
        commands = plan_assignments(log.state, [offer], 10 * SECOND, new_run_id=lambda: "r1")
        return [command.gpu_indices for command in commands]

    assert placed(near) == [(4, 5, 6, 7)]
    assert placed(blind) == [(2, 3, 4, 5)]
