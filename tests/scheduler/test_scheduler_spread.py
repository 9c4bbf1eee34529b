"""Spread groups: a service's replicas land on different nodes while nodes have room,
so one node's loss takes as few of them as it can."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from murmur.scheduler import rank_nodes, schedule
from tests.scheduler.builders import make_job, make_node, make_snapshot


def test_a_node_running_a_replica_ranks_after_one_that_runs_none() -> None:
    # Best fit alone would pick "fuller" (fewer GPUs left); the spread group wins.
    nodes = [make_node("fuller", busy=range(6), spread={"llm": 1}), make_node("empty")]
    job = make_job("replica", 1, spread="llm")
    assert [node.name for node in rank_nodes(nodes, job)] == ["empty", "fuller"]
    # Another group's replicas, or a job of no group, change nothing.
    other = make_job("other", 1, spread="embedder")
    assert [node.name for node in rank_nodes(nodes, other)] == ["fuller", "empty"]
    assert [node.name for node in rank_nodes(nodes, make_job("batch", 1))] == ["fuller", "empty"]


@given(
    replicas=st.integers(min_value=1, max_value=12),
    node_count=st.integers(min_value=1, max_value=6),
    busy=st.lists(st.integers(min_value=0, max_value=4), min_size=6, max_size=6),
)
def test_replicas_placed_in_one_plan_spread_as_evenly_as_room_allows(
    replicas: int, node_count: int, busy: list[int]
) -> None:
    nodes = [make_node(f"n{i}", busy=range(busy[i])) for i in range(node_count)]
    jobs = [make_job(f"r{slot}", 1, spread="llm") for slot in range(replicas)]
    plan = schedule(make_snapshot(nodes, jobs))
    per_node = Counter(p.assignments[0].node for p in plan.placements)
    room = sum(8 - busy[i] for i in range(node_count))
    assert len(plan.placements) == min(replicas, room)
    if all(8 - busy[i] >= replicas for i in range(node_count)):
        # Every node could take them all, so spreading alone decides: no node holds
        # two more than another, whatever best fit would prefer.
        counts = [per_node.get(node.name, 0) for node in nodes]
        assert max(counts) - min(counts) <= 1


def test_replicas_already_running_count_toward_the_spread() -> None:
    nodes = [make_node("a", spread={"llm": 2}), make_node("b", spread={"llm": 1}), make_node("c")]
    jobs = [make_job(f"r{slot}", 1, spread="llm") for slot in range(3)]
    plan = schedule(make_snapshot(nodes, jobs))
    per_node = Counter(p.assignments[0].node for p in plan.placements)
    # c first (none), then b and c (one each), so every node ends with two.
    assert per_node == Counter({"c": 2, "b": 1})


def test_a_restarting_replica_prefers_its_previous_node_but_not_over_the_spread() -> None:
    nodes = [make_node("a"), make_node("b", busy=range(4)), make_node("c", spread={"llm": 1})]
    back = make_job("replica", 1, spread="llm", previous_node="a")
    # Best fit would take b; the previous node wins over it.
    assert rank_nodes(nodes, back)[0].name == "a"
    # A previous node running another replica of the service loses to an empty one.
    crowded = make_job("replica", 1, spread="llm", previous_node="c")
    assert [node.name for node in rank_nodes(nodes, crowded)] == ["b", "a", "c"]
