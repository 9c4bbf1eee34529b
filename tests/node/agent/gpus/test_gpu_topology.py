"""Locality groups (topology.group_ids) and the topology a --simulate-gpus spec declares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.agent.gpus import (
    GpuFacts,
    SimulatedGpuProbe,
    SimulatedGpuSpecError,
    parse_simulated_spec,
)
from murmur.node.agent.gpus.topology import blocks, group_ids


def groups(devices: tuple[GpuFacts, ...]) -> list[tuple[int, int | None, int | None]]:
    return [(device.index, device.nvlink_group, device.pcie_group) for device in devices]


def test_groups_are_connected_gpus_named_by_their_lowest_index() -> None:
    assert group_ids(range(6), [(4, 2), (2, 5), (1, 0), (9, 3)]) == {
        0: 0,
        1: 0,
        2: 2,
        4: 2,
        5: 2,
    }


def test_blocks_pair_each_gpu_with_the_next_of_its_block() -> None:
    assert blocks(4, 6, 3) == [(4, 5), (5, 6), (7, 8), (8, 9)]
    assert blocks(0, 4, 1) == []


@given(
    st.integers(1, 12).flatmap(
        lambda count: st.tuples(
            st.just(count),
            st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1))),
        )
    )
)
def test_two_gpus_share_a_group_exactly_when_a_path_of_near_pairs_joins_them(
    case: tuple[int, list[tuple[int, int]]],
) -> None:
    count, pairs = case
    found = group_ids(range(count), pairs)

    reach = {index: {index} for index in range(count)}
    for _ in range(count):
        for first, second in pairs:
            joined = reach[first] | reach[second]
            for index in joined:
                reach[index] = joined
    for index in range(count):
        if len(reach[index]) == 1:
            assert index not in found
        else:
            assert found[index] == min(reach[index])


def test_a_spec_declares_two_nvlink_islands_of_four() -> None:
    devices = parse_simulated_spec("8xA100-80GB:nvlink=4")

    assert groups(devices) == [(i, 0 if i < 4 else 4, None) for i in range(8)]
    assert {device.memory_total_bytes for device in devices} == {80 * 2**30}


def test_islands_and_switches_count_from_each_group_of_the_spec() -> None:
    devices = parse_simulated_spec("2xT4, 4xH100-80GB:pcie=2:NVLINK=4, 2xL4:pcie=2")

    assert groups(devices) == [
        (0, None, None),
        (1, None, None),
        (2, 2, 2),
        (3, 2, 2),
        (4, 2, 4),
        (5, 2, 4),
        (6, None, 6),
        (7, None, 6),
    ]


def test_a_probe_reports_the_declared_topology() -> None:
    inventory = SimulatedGpuProbe("4xA100:nvlink=2").inventory()

    assert [device.nvlink_group for device in inventory.devices] == [0, 0, 2, 2]
    assert inventory.reason == "simulated: 4xA100:nvlink=2"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("8xA100:nvlink=3", "nvlink=3 in '8xA100:nvlink=3' is not a whole number dividing 8"),
        ("8xA100:pcie=0", "pcie=0 in '8xA100:pcie=0' is not a whole number dividing 8"),
        ("8xA100:pcie=16", "pcie=16 in '8xA100:pcie=16' is not a whole number dividing 8"),
        ("8xA100:nvlink=four", "nvlink=four in '8xA100:nvlink=four' is not a whole number"),
        ("8xA100:nvlink=²", "nvlink=² in '8xA100:nvlink=²' is not a whole number"),
        ("8xA100:nvlink", "'nvlink' in '8xA100:nvlink' is not :nvlink=N or :pcie=N"),
        ("8xA100:numa=2", "'numa=2' in '8xA100:numa=2' is not :nvlink=N or :pcie=N"),
        ("8xA100:", "'' in '8xA100:' is not :nvlink=N or :pcie=N"),
        ("8xA100:nvlink=2:nvlink=4", "nvlink is given twice in '8xA100:nvlink=2:nvlink=4'"),
        (":nvlink=2", "':nvlink=2' does not start with COUNTx"),
        ("8x:nvlink=2", "'8x' has no MODEL after '8x'"),
    ],
)
def test_bad_topology_says_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(SimulatedGpuSpecError) as caught:
        parse_simulated_spec(spec)

    assert str(caught.value).startswith(f"invalid --simulate-gpus {spec!r}: {problem}")
