"""Which GPUs of a node a rank gets when the node says which GPUs are near.

Examples first (each one a case the topology-blind choice, the shortest run of
consecutive indices, gets wrong), then properties over random topologies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.scheduler import (
    ClusterSnapshot,
    GpuState,
    NodeState,
    Policy,
    choose_gpu_indices,
    schedule,
)
from murmur.scheduler.gpu_topology import NO_TOPOLOGY, GpuTopology, choose_near, shortest_run
from tests.scheduler.builders import GIB, make_job, make_snapshot
from tests.scheduler.invariants import check_plan
from tests.scheduler.strategies import policies, snapshots


def islands(*groups: Iterable[int]) -> dict[int, int]:
    """GPU index → group id (its lowest index) for the given groups."""
    found: dict[int, int] = {}
    for group in groups:
        members = sorted(group)
        found.update(dict.fromkeys(members, members[0]))
    return found


def topology_node(
    gpus: int = 8,
    *,
    nvlink: Mapping[int, int] | None = None,
    pcie: Mapping[int, int] | None = None,
    busy: Iterable[int] = (),
    shared: Iterable[int] = (),
    name: str = "n",
) -> NodeState:
    nvlink, pcie, busy_set, shared_set = nvlink or {}, pcie or {}, set(busy), set(shared)
    states = []
    for index in range(gpus):
        holders: tuple[str, ...] = ()
        if index in busy_set:
            holders = (f"run-{index}",)
        elif index in shared_set:
            holders = (f"share-{index}",)
        states.append(
            GpuState(
                index,
                "A100-80GB",
                80 * GIB,
                holders,
                index in shared_set,
                nvlink_group=nvlink.get(index),
                pcie_group=pcie.get(index),
            )
        )
    return NodeState(name, tuple(states), 64, 64, 512 * GIB, 512 * GIB)


def free_of(node: NodeState) -> list[int]:
    return [gpu.index for gpu in node.gpus if not gpu.holders]


TWO_ISLANDS = islands(range(4), range(4, 8))
INTERLEAVED = islands((0, 2, 4, 6), (1, 3, 5, 7))


def test_a_rank_gets_a_whole_nvlink_island_rather_than_a_run_across_two() -> None:
    node = topology_node(nvlink=TWO_ISLANDS, busy={1})
    assert shortest_run(free_of(node), 4) == (2, 3, 4, 5)  # what indices alone give

    assert choose_gpu_indices(node, make_job("j", 4)) == (4, 5, 6, 7)


def test_gpus_stay_inside_an_island_whatever_its_indices() -> None:
    node = topology_node(nvlink=INTERLEAVED)

    assert choose_gpu_indices(node, make_job("j", 2)) == (0, 2)
    assert choose_gpu_indices(node, make_job("j", 4)) == (0, 2, 4, 6)


def test_a_small_rank_fills_an_island_already_broken_into() -> None:
    node = topology_node(nvlink=INTERLEAVED, busy={1})

    assert choose_gpu_indices(node, make_job("j", 1)) == (3,)
    assert choose_gpu_indices(node, make_job("j", 3)) == (3, 5, 7)


def test_among_islands_as_free_a_broken_one_goes_before_an_intact_one() -> None:
    # {0, 1, 2} intact; {3, 4, 5, 6} with 6 held: three free in each.
    node = topology_node(nvlink=islands(range(3), range(3, 7)), busy={6})

    assert choose_gpu_indices(node, make_job("j", 2)) == (3, 4)


def test_a_gpu_in_no_island_goes_to_a_one_gpu_rank_first() -> None:
    node = topology_node(5, nvlink=islands(range(4)))

    assert choose_gpu_indices(node, make_job("j", 1)) == (4,)
    assert choose_gpu_indices(node, make_job("j", 2)) == (0, 1)


def test_one_pcie_switch_when_no_nvlink_island_fits() -> None:
    node = topology_node(pcie=islands(range(4), range(4, 8)), busy={2})
    assert shortest_run(free_of(node), 3) == (3, 4, 5)

    assert choose_gpu_indices(node, make_job("j", 3)) == (0, 1, 3)


def test_inside_an_nvswitch_island_one_pcie_switch_when_it_can() -> None:
    # Every GPU on one NVLink fabric (NVSwitch); PCIe switches hold pairs.
    node = topology_node(
        nvlink=islands(range(8)), pcie=islands((0, 1), (2, 3), (4, 5), (6, 7)), busy={0, 3}
    )
    assert shortest_run(free_of(node), 2) == (1, 2)

    assert choose_gpu_indices(node, make_job("j", 2)) == (4, 5)
    assert choose_gpu_indices(node, make_job("j", 1)) == (1,)


def test_with_no_group_large_enough_the_choice_is_the_topology_blind_one() -> None:
    node = topology_node(nvlink=TWO_ISLANDS, pcie=TWO_ISLANDS, busy={0, 4})

    assert choose_gpu_indices(node, make_job("j", 4)) == shortest_run(free_of(node), 4)
    assert choose_gpu_indices(node, make_job("j", 4)) == (1, 2, 3, 5)


def test_a_sharing_rank_joins_shared_gpus_then_takes_free_ones_inside_one_island() -> None:
    node = topology_node(nvlink=INTERLEAVED, shared={0})
    assert shortest_run(free_of(node), 2) == (1, 2)

    # Island {0, 2, 4, 6} has three free, {1, 3, 5, 7} four: the best fit is the first.
    assert choose_gpu_indices(node, make_job("j", 3, share=True)) == (0, 2, 4)


def test_the_model_constraint_still_holds() -> None:
    gpus = tuple(
        GpuState(index, "T4" if index % 2 else "A100", nvlink_group=index // 4 * 4)
        for index in range(8)
    )
    node = NodeState("mixed", gpus, 8, 8, 0, 0)

    assert choose_gpu_indices(node, make_job("j", 2, model="a100")) == (0, 2)
    assert choose_gpu_indices(node, make_job("j", 2, model="t4")) == (1, 3)


def test_a_plan_keeps_an_island_whole_for_the_big_job_that_follows() -> None:
    node = topology_node(nvlink=INTERLEAVED)
    jobs = [make_job(f"small-{n}", 1) for n in range(3)] + [make_job("big", 4)]

    plan = schedule(make_snapshot([node], jobs))

    chosen = {p.job_id: p.assignments[0].gpu_indices for p in plan.placements}
    assert chosen == {"small-0": (0,), "small-1": (2,), "small-2": (4,), "big": (1, 3, 5, 7)}
    blind = schedule(make_snapshot([without_topology(node)], jobs))
    assert [p.assignments[0].gpu_indices for p in blind.placements][-1] == (3, 4, 5, 6)


# ---------------------------------------------------------------- properties


@st.composite
def topologies(draw: st.DrawFn, gpus: int) -> tuple[dict[int, int], dict[int, int]]:
    """Random groups: each GPU in one of a few groups, or in none."""
    labels = st.sampled_from((None, 0, 1, 2, 3))
    nvlink = {i: g for i in range(gpus) if (g := draw(labels)) is not None}
    pcie = {i: g for i in range(gpus) if (g := draw(labels)) is not None}
    return nvlink, pcie


@st.composite
def nodes_with_topology(draw: st.DrawFn) -> NodeState:
    gpus = draw(st.integers(1, 16))
    nvlink, pcie = draw(topologies(gpus))
    busy = draw(st.sets(st.integers(0, gpus - 1)))
    return topology_node(gpus, nvlink=nvlink, pcie=pcie, busy=busy)


def free_by_group(free: Iterable[int], groups: Mapping[int, int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for index in free:
        if index in groups:
            found.setdefault(groups[index], []).append(index)
    return found


@settings(max_examples=500, deadline=None)
@given(nodes_with_topology(), st.data())
def test_the_chosen_gpus_are_free_enough_and_inside_one_group_when_one_has_room(
    node: NodeState, data: st.DataObject
) -> None:
    free = free_of(node)
    if not free:
        return
    # Mostly no more than half the free GPUs, so that several groups may have room.
    count = data.draw(st.integers(1, len(free)) | st.integers(1, (len(free) + 1) // 2))
    nvlink = {g.index: g.nvlink_group for g in node.gpus if g.nvlink_group is not None}
    pcie = {g.index: g.pcie_group for g in node.gpus if g.pcie_group is not None}

    chosen = choose_gpu_indices(node, make_job("j", count))

    assert len(chosen) == count
    assert list(chosen) == sorted(set(chosen))
    assert set(chosen) <= set(free)
    fitting_islands = [m for m in free_by_group(free, nvlink).values() if len(m) >= count]
    fitting_switches = [m for m in free_by_group(free, pcie).values() if len(m) >= count]
    if count > 1 and fitting_islands:
        assert len({nvlink.get(index) for index in chosen}) == 1
        assert None not in {nvlink.get(index) for index in chosen}
        # Best fit: no island with room has fewer free GPUs than the one chosen.
        island = next(m for m in fitting_islands if chosen[0] in m)
        assert len(island) == min(len(m) for m in fitting_islands)
    elif count > 1 and fitting_switches:
        assert len({pcie.get(index) for index in chosen}) == 1
        assert None not in {pcie.get(index) for index in chosen}
    elif count > 1:
        assert chosen == shortest_run(free, count)


@given(st.sets(st.integers(0, 15)), st.integers(0, 16))
def test_without_topology_the_choice_is_the_shortest_run(free: set[int], count: int) -> None:
    candidates = sorted(free)
    assert GpuTopology.of(topology_node(16).gpus) is NO_TOPOLOGY

    assert choose_near(candidates, count, NO_TOPOLOGY) == shortest_run(candidates, count)


def with_topology(snapshot: ClusterSnapshot, seed: int) -> ClusterSnapshot:
    """The snapshot with every node's GPUs of one model (its first GPU's) and in
    NVLink pairs and PCIe switches of four, counted from a seed-dependent offset."""
    nodes = []
    for node in snapshot.nodes:
        model = node.gpus[0].model if node.gpus else ""
        gpus = tuple(
            dataclasses.replace(
                gpu,
                model=model,
                nvlink_group=(gpu.index + seed) // 2,
                pcie_group=None if seed % 3 == 0 else (gpu.index + seed) // 4,
            )
            for gpu in node.gpus
        )
        nodes.append(dataclasses.replace(node, gpus=gpus))
    return dataclasses.replace(snapshot, nodes=tuple(nodes))


def without_topology(node: NodeState) -> NodeState:
    gpus = tuple(dataclasses.replace(gpu, nvlink_group=None, pcie_group=None) for gpu in node.gpus)
    return dataclasses.replace(node, gpus=gpus)


@settings(max_examples=200, deadline=None)
@given(snapshots(), policies, st.integers(0, 7))
def test_topology_changes_which_gpus_never_which_node(
    snapshot: ClusterSnapshot, policy: Policy, seed: int
) -> None:
    near = with_topology(snapshot, seed)
    blind = dataclasses.replace(near, nodes=tuple(without_topology(n) for n in near.nodes))

    plan = schedule(near, policy=policy)

    check_plan(near, policy, plan)
    blind_plan = schedule(blind, policy=policy)
    assert [(p.job_id, [a.node for a in p.assignments]) for p in plan.placements] == [
        (p.job_id, [a.node for a in p.assignments]) for p in blind_plan.placements
    ]
    assert plan.waiting == blind_plan.waiting
    assert plan.reservations == blind_plan.reservations
